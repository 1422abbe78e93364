"""Waiting in tests: for a condition, never for a guessed length of time.

A test that sleeps "long enough" for another thread or process to get somewhere fails when the
machine is busy (CI shares two cores). `wait_until` polls a condition up to a generous deadline
and fails the test with a message when the deadline passes, so a slow machine only makes a test
slower, never red; and a real hang still ends."""
from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")
DEADLINE_S = 60.0  # far beyond any wait on a loaded 2-core machine; only a real hang reaches it


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = DEADLINE_S, poll_s: float = 0.01) -> T:
    """The first truthy value of `condition()`; AssertionError naming `what` after `timeout_s`."""
    end = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)
