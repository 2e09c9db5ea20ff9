"""waiting: poll a condition with a deadline, never a fixed sleep.

    wait_for(lambda: svc.listening(), 20, what="part3-fork to listen")

returns the predicate's first truthy value, or raises TimedOut with what
it waited for and the last value seen. `poll` is the same without the
exception: it returns the last value, truthy or not, for callers that
report a miss instead of failing (the lab).
"""

from __future__ import annotations

import time


class TimedOut(Exception):
    """A wait_for deadline passed; a test that gets it fails with its text."""


def poll(predicate, timeout: float, interval: float = 0.1):
    """Call `predicate` until it returns something truthy or `timeout` s pass;
    return the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """The predicate's first truthy value; TimedOut after `timeout` s."""
    value = poll(predicate, timeout, interval)
    if not value:
        raise TimedOut(f"timed out after {timeout:g} s waiting for {what} (last: {value!r})")
    return value
