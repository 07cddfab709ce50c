"""Hedged URGENT requests: the local attempt, raced by the remote tier once it is slow.

`race()` starts the local attempt. When it has not finished within `after_s`,
the remote call starts beside it (the tier puts the fastest healthy provider
first for URGENT requests). The first acceptable answer wins and the other is
cancelled: a local answer is acceptable when `accept` says so (its confidence
passes the threshold); one that is not leaves the remote call running, as the
escalation it would have started anyway. A remote call that fails leaves the
local attempt to finish. What each side did comes back in a `Race`, for the
router to compose the answer; the remote tier's tries are kept even when the
call was cancelled (it settles its own token reservations: gateway/remote/tier.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gateway.core.contracts import Attempt

L = TypeVar("L")
R = TypeVar("R")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Race(Generic[L, R]):
    local: L | None  # the local attempt's outcome; None when it was cancelled (the remote answer won)
    remote: R | None  # the remote answer, when it won or was awaited after a local answer that was not enough
    remote_error: Exception | None  # why a started remote call gave no answer (one of `expected`)
    remote_attempts: tuple[Attempt, ...]  # the remote tier's tries and skips, a cancelled try included
    hedged: bool  # the remote call was started
    local_ms: float  # how long the local attempt ran, until it finished or was cancelled
    after_ms: float  # the hedge delay this request had


async def race(
    local: Awaitable[L],
    remote: Callable[[list[Attempt]], Awaitable[R]],
    *,
    after_s: float,
    accept: Callable[[L], bool],
    expected: tuple[type[Exception], ...],
) -> Race[L, R]:
    """Run `local`; start `remote(attempts)` if `local` is still running after `after_s` seconds.

    `remote` must append each try to the list it is given as it happens. A remote error
    in `expected` is reported in the Race; any other error, and any local error, is raised
    once both sides have stopped.
    """
    started = time.perf_counter()
    local_task = asyncio.ensure_future(local)
    remote_task: asyncio.Future[R] | None = None
    attempts: list[Attempt] = []
    try:
        done, _ = await asyncio.wait((local_task,), timeout=after_s)
        if not done:
            remote_task = asyncio.ensure_future(remote(attempts))
            await asyncio.wait((local_task, remote_task), return_when=asyncio.FIRST_COMPLETED)
        after_ms = after_s * 1000
        if remote_task is None:
            return Race(local_task.result(), None, None, (), False, _ms(started), after_ms)
        if local_task.done():
            answer = local_task.result()
            local_ms = _ms(started)
            if accept(answer) and not _answered(remote_task):
                await _cancel(remote_task)
                return Race(answer, None, None, tuple(attempts), True, local_ms, after_ms)
            result, error = await _settle(remote_task, expected)
            return Race(answer, result, error, tuple(attempts), True, local_ms, after_ms)
        result, error = await _settle(remote_task, expected)
        if result is not None:
            local_ms = _ms(started)
            await _cancel(local_task)
            return Race(None, result, None, tuple(attempts), True, local_ms, after_ms)
        answer = await local_task
        return Race(answer, None, error, tuple(attempts), True, _ms(started), after_ms)
    finally:
        for task in (local_task, remote_task):  # the caller left, or a side raised: stop the other
            if task is not None and not task.done():
                await _cancel(task)


def _answered(task: asyncio.Future[Any]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def _settle(task: Awaitable[T], expected: tuple[type[Exception], ...]) -> tuple[T | None, Exception | None]:
    try:
        return await task, None
    except expected as exc:
        return None, exc


async def _cancel(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and wait until it has settled what it held; its own outcome is not raised here."""
    task.cancel()
    await asyncio.wait((task,))  # raises CancelledError only when the caller itself is cancelled
    if not task.cancelled():
        task.exception()  # retrieved: a failure while stopping is not logged as never retrieved


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
