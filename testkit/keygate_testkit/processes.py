"""Child processes with their output in a log file, stopped politely and then for sure."""
import signal
import subprocess
from pathlib import Path

STOP_SECONDS = 15


def start(argv, log_path, env=None, cwd=None):
    """Starts `argv` with stdout and stderr appended to `log_path`; returns the Popen."""
    with open(log_path, "ab") as log:
        return subprocess.Popen([str(arg) for arg in argv], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)


def stop(proc, timeout=STOP_SECONDS, sig=signal.SIGTERM):
    """Sends `sig` (SIGTERM) and waits `timeout` seconds, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout=timeout)


def rss_mb(pid):
    """Resident memory of process `pid` in MiB (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Program:
    """Any program the kit has no launcher of its own for (a benchmark's authorizer, say)."""

    def __init__(self, argv, log_path, env=None, cwd=None):
        self.log_path = Path(log_path)
        self.proc = start(argv, log_path, env=env, cwd=cwd)

    def close(self):
        stop(self.proc)
