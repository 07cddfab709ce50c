"""Records queued on the request path and written to a store in batches, off it.

`put` only queues (never blocks, never raises); one writer task drains the
queue into `write` (one transaction or pipeline per batch, gathering items for
up to `linger_s` so a busy gateway writes a few batches a second, not one per
request) and calls `maintain` (retention, trimming) at most every
`maintain_every_s`. `flush()` skips the wait. A full queue drops items with a
warning rather than slow requests. A store outage loses a batch, never the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatchWriter(Generic[T]):
    def __init__(
        self,
        write: Callable[[list[T]], Awaitable[None]],
        *,
        name: str,
        maintain: Callable[[], Awaitable[None]] | None = None,
        maintain_every_s: float = 3600.0,
        max_queue: int = 10_000,
        max_batch: int = 256,
        linger_s: float = 0.05,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._write = write
        self._name = name
        self._maintain = maintain
        self._maintain_every_s = maintain_every_s
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._wall = wall
        self._hurry = asyncio.Event()
        self._queue: asyncio.Queue[T] = asyncio.Queue(max_queue)
        self._writer: asyncio.Task[None] | None = None
        self._last_maintained = 0.0
        self.dropped = 0

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever(), name=f"{self._name}-writer")

    def put(self, item: T) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(f"{self._name} queue full; records dropped", extra={"dropped": self.dropped})

    async def flush(self) -> None:
        """Wait until every queued item is written (returns at once when the writer is not running)."""
        if self._writer is None or self._writer.done():
            return
        self._hurry.set()
        await self._queue.join()

    async def aclose(self) -> None:
        if self._writer is None:
            return
        await self.flush()
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        self._writer = None

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger_s > 0 and not self._hurry.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._linger_s)
            self._hurry.clear()
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
                await self._maybe_maintain()
            except Exception as exc:  # noqa: BLE001 - a store outage loses records, never the writer
                log.warning(f"{self._name} records not written", extra={"records": len(batch), "error": repr(exc)})
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _maybe_maintain(self) -> None:
        now = self._wall()
        if self._maintain is not None and now - self._last_maintained >= self._maintain_every_s:
            self._last_maintained = now
            await self._maintain()
