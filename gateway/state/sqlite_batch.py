"""Group commit for one SQLite connection: transactions queued together run inside one BEGIN IMMEDIATE.

Each queued step still runs atomically and alone (inside its own SAVEPOINT: a
step that raises is rolled back without touching the others), and its caller
gets its result only after the shared COMMIT, so other processes sharing the
file see exactly what they would with one transaction per step. While one
batch is on the worker thread, new steps wait on the event loop and go
together in the next: under load the thread hop, the write lock and the commit
are paid once per batch instead of once per step.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
Step = Callable[[sqlite3.Connection], Any]
MAX_BATCH = 256  # steps per transaction, so another process waiting for the write lock is not kept long


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one step returned, or the exception it raised."""

    value: Any = None
    error: BaseException | None = None


def run_steps(conn: sqlite3.Connection, steps: Sequence[Step]) -> list[Outcome]:
    """Worker thread: every step in one BEGIN IMMEDIATE ... COMMIT, each isolated by a savepoint."""
    single = len(steps) == 1
    conn.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_one(conn, step, savepoint=not single) for step in steps]
        if single and outcomes[0].error is not None:
            conn.execute("ROLLBACK")
            return outcomes
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _one(conn: sqlite3.Connection, step: Step, *, savepoint: bool) -> Outcome:
    if savepoint:
        conn.execute("SAVEPOINT step")
    try:
        value = step(conn)
    except Exception as exc:  # noqa: BLE001 - handed to the step's caller
        if savepoint:
            conn.execute("ROLLBACK TO step")
            conn.execute("RELEASE step")
        return Outcome(error=exc)
    if savepoint:
        conn.execute("RELEASE step")
    return Outcome(value)


@dataclass(frozen=True, slots=True)
class _Queued:
    step: Step
    future: asyncio.Future[Any]


class TransactionQueue:
    """Event-loop side: queue steps, hand them to `execute` (which runs `run_steps` on the worker) in batches."""

    def __init__(self, execute: Callable[[list[Step]], Awaitable[list[Outcome]]]) -> None:
        self._execute = execute
        self._pending: list[_Queued] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, step: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append(_Queued(step, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain(), name="sqlite-transactions")
        return await future

    async def wait_idle(self) -> None:
        """Until every queued step has run (for shutdown)."""
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)

    async def _drain(self) -> None:
        while self._pending:
            taken, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            batch = [q for q in taken if not q.future.done()]  # a caller cancelled before its turn: skip it
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[_Queued]) -> None:
        try:
            outcomes = await self._execute([q.step for q in batch])
        except asyncio.CancelledError:
            for queued in (*batch, *self._pending):
                queued.future.cancel()
            self._pending = []
            raise
        except Exception as exc:  # noqa: BLE001 - the whole transaction failed: every caller hears why
            outcomes = [Outcome(error=exc)] * len(batch)
        for queued, outcome in zip(batch, outcomes, strict=True):
            if queued.future.done():
                continue
            if outcome.error is not None:
                queued.future.set_exception(outcome.error)
            else:
                queued.future.set_result(outcome.value)
