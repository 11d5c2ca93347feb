"""The one way a test waits for something that happens by itself: poll a condition, bounded.

Tests never sleep a fixed time hoping that something happened, and never assert how long it
took; they poll until it did, and fail with what never came if it did not within `timeout`
(which only bounds a broken run, it is not the behaviour under test).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

INTERVAL = 0.02


def eventually(condition: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """Poll `condition` until it returns something truthy (True, a row, a page), and return that.

    After `timeout` seconds raise AssertionError naming `what`. An exception the condition
    raises propagates at once (a process that exited will not come up by waiting).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        time.sleep(INTERVAL)


async def eventually_async(
    condition: Callable[[], T | None],
    what: str,
    timeout: float = 10.0,  # noqa: ASYNC109 (bounds a poll; there is no operation to cancel)
) -> T:
    """`eventually` inside an event loop: yields to the loop between polls instead of blocking."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"never happened within {timeout} s: {what}")
        await asyncio.sleep(INTERVAL)
