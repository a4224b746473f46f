"""A throwaway Redis for tests and benchmarks: Debian's `redis-server` in a temporary folder,
on a free loopback port, without persistence (as the fleet counts need none), stopped at the
end. It can be stopped and started again on the same port: it comes back empty, as a Redis
restarted without persistence does. Every wait is bounded."""

import shutil
import subprocess
import socket
import tempfile
from pathlib import Path

from .ports import free_port
from .processes import start, stop
from .waiting import wait_until

START_SECONDS = 20


def require_redis_server():
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server not found: run scripts/install-system-deps.sh "
                           "(Debian package redis-server)")
    return path


def ping(port, timeout=1.0):
    """True when a Redis answers PING on 127.0.0.1:`port`."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(64).startswith(b"+PONG")


class RedisServer:
    """`start()` it; `url` is what `keygate-control serve --redis-url` takes."""

    def __init__(self, directory=None, port=None):
        self.binary = require_redis_server()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="keygate-redis-"))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.log_path = self.directory / "redis.log"
        self.proc = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = start([self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                           "--protected-mode", "yes"], self.log_path)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            return ping(self.port)

        wait_until(up, timeout=START_SECONDS, what="redis-server PING", retry_on=(OSError,))
        return self

    def command(self, *args):
        """One command through redis-cli (tests' look inside), its output."""
        cli = shutil.which("redis-cli")
        result = subprocess.run([cli, "-p", str(self.port), *map(str, args)], capture_output=True,
                                text=True, timeout=10, check=True)
        return result.stdout

    def stop(self, hard=False):
        if self.proc is not None and self.proc.poll() is None:
            if hard:
                self.proc.kill()
                self.proc.wait(timeout=10)
            else:
                stop(self.proc)

    def close(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
