"""Bounded waits: poll a condition with a deadline, never a bare sleep."""
import time


class Timeout(AssertionError):
    """A condition did not hold within its deadline."""


def wait_until(condition, timeout=20.0, interval=0.05, what="condition", retry_on=(Exception,)):
    """Polls `condition` every `interval` seconds until it returns a truthy value, which is
    returned; raises Timeout after `timeout` seconds. An exception of a `retry_on` type counts as
    "not yet" (a process still starting refuses connections); any other propagates at once."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except retry_on as error:
            last_error = error
        if time.monotonic() >= deadline:
            raise Timeout(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")
        time.sleep(interval)
