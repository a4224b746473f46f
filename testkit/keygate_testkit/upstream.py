"""The demo upstream (scripts/demo_upstream.py, a JSON echo) on a free loopback port."""
import subprocess
import sys

import requests

from .paths import ROOT
from .ports import free_port
from .processes import stop
from .waiting import wait_until


class Upstream:
    """The demo upstream, returned once it answers; `port` is where it listens."""

    def __init__(self, *args):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts/demo_upstream.py"), "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(self._answers, what="demo upstream", retry_on=(requests.RequestException,))
        except AssertionError:
            self.close()
            raise

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the demo upstream exited with {self.proc.returncode}")
        return requests.get(self.url("/"), timeout=1).ok

    def close(self):
        stop(self.proc, timeout=10)
