"""The demo upstream (scripts/demo_upstream.py, a JSON echo) on a free loopback port."""
import sys
import tempfile
from pathlib import Path

import requests

from .paths import ROOT
from .ports import free_port
from .processes import start, stop
from .waiting import wait_until

START_SECONDS = 15


class Upstream:
    """The demo upstream started with `args` (its options), returned once it answers."""

    def __init__(self, *args):
        self.port = free_port()
        self.log_path = Path(tempfile.mkdtemp(prefix="keygate-upstream-")) / "upstream.log"
        self.proc = start([sys.executable, ROOT / "scripts/demo_upstream.py", "--port", self.port, *args], self.log_path)
        try:
            wait_until(self._answers, timeout=START_SECONDS, what="demo upstream", retry_on=(requests.RequestException,))
        except AssertionError as error:
            self.close()
            raise AssertionError(f"demo upstream did not start ({error}): {self.log_path.read_text()!r}") from None

    def url(self, path=""):
        return f"http://127.0.0.1:{self.port}{path}"

    def _answers(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the demo upstream exited with {self.proc.returncode}")
        return requests.get(self.url("/"), timeout=1).ok

    def close(self):
        stop(self.proc, timeout=10)
