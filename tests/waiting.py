"""Waiting in tests: poll a condition until it holds, with a deadline that fails naming what was awaited.

Tests wait for something observable (a counter, a log line, a metric, a
finished thread), never for a fixed time standing in for "ready by now".
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Call `condition` until it returns something truthy and return that; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(interval_s)
    return value


async def wait_until_async(
    condition: Callable[[], T | Awaitable[T]], *, timeout_s: float, what: str, interval_s: float = 0.01
) -> T:
    """The same in a coroutine: `condition` may be sync or async, and a call that hangs counts against the deadline."""

    checking = False  # whether the deadline fell during a call of `condition`, for the message

    async def poll() -> T:
        nonlocal checking
        while True:  # bounded by the asyncio.timeout around it
            checking = True
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            checking = False
            if value:
                return value  # type: ignore[return-value]
            await asyncio.sleep(interval_s)

    try:
        async with asyncio.timeout(timeout_s):
            return await poll()
    except TimeoutError:
        during = " (the last check had not answered)" if checking else ""
        raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}{during}") from None
