"""A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` + `pg_ctl` from Debian's
packages in a temporary folder, on a free loopback port, stopped at the end. As root (CI), the
server runs as the `postgres` user, which PostgreSQL requires. Every wait is bounded."""

import glob
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

from .ports import free_port

START_DEADLINE_SECONDS = 30
USER = "keygate"


def bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda path: int(Path(path).parent.parent.name))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found under /usr/lib/postgresql: "
                           "run scripts/install-system-deps.sh (Debian package postgresql)")
    return Path(found[-1]).parent


class PostgresCluster:
    """A cluster in `directory`: `init()`, then `start()`; `destroy()` stops it and removes the
    folder. `durable` keeps fsync on (benchmarks), which tests turn off."""

    def __init__(self, directory: Path, durable=False):
        self.directory = Path(directory)
        self.durable = durable
        self.data = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self.bin = bindir()
        self.as_root = os.geteuid() == 0

    def _run(self, *args, check=True, timeout=START_DEADLINE_SECONDS):
        command = [str(self.bin / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, timeout=timeout, capture_output=True, text=True)

    def init(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if self.as_root:
            entry = pwd.getpwnam("postgres")
            for path in (self.directory, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            # The server user must reach its folder through every parent.
            parent = self.directory.parent
            while parent != parent.parent:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    os.chmod(parent, mode | 0o001)
                parent = parent.parent
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8")
        return self

    def start(self):
        # fsync off unless durable: test clusters are thrown away, and the tests measure our
        # behaviour, not the disk's. Many connections: every replica keeps a pool.
        options = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=300")
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(START_DEADLINE_SECONDS), "start")
        return self

    def stop(self, mode="fast"):
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w",
                  "-t", str(START_DEADLINE_SECONDS), "stop", check=False)

    def restart(self):
        self.stop()
        self.start()

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def psql(self, database, sql):
        """Runs `sql` and returns its rows as lists of strings."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
             "-d", database, "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True, timeout=60, capture_output=True, text=True)
        return [line.split("\t") for line in result.stdout.splitlines()]

    def new_database(self, prefix="keygate"):
        """A new empty database; returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self.psql("postgres", f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, database):
        return f"postgres://{USER}@127.0.0.1:{self.port}/{database}"

    def dump(self, url):
        """Everything stored in the database at `url`, as SQL text."""
        database = url.rsplit("/", 1)[1]
        result = subprocess.run(
            [str(self.bin / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
             database], check=True, timeout=120, capture_output=True, text=True)
        return result.stdout
