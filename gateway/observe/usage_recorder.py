"""Turns each answer into a UsageRecord and writes them to the store in batches, off the request path.

`record(request, result)` only queues; one writer task drains the queue into
the store (one transaction or pipeline per batch, gathering records for up to
`linger_s` so a busy gateway writes a few batches a second, not one per
request) and applies retention once an hour. `flush()` skips the wait. A full
queue drops records with a warning rather than slow requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gateway.core.contracts import Request, Result, Role, TaskCatalog
from gateway.observe.pricing import PriceTable
from gateway.state.usage.store import UsageRecord, UsageStore

log = logging.getLogger(__name__)

CLIENT_TAGS = ("client_id", "client")
PROMPT_CHARS = 500
PURGE_EVERY_S = 3600.0


class UsageRecorder:
    def __init__(
        self,
        store: UsageStore,
        tasks: TaskCatalog,
        prices: PriceTable,
        *,
        retention_s: float,
        record_prompts: bool = False,
        max_queue: int = 10_000,
        max_batch: int = 256,
        linger_s: float = 0.05,
        on_record: Callable[[UsageRecord], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._on_record = on_record
        self._tasks = tasks
        self._prices = prices
        self._retention_s = retention_s
        self._record_prompts = record_prompts
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._hurry = asyncio.Event()
        self._wall = wall
        self._queue: asyncio.Queue[UsageRecord] = asyncio.Queue(max_queue)
        self._writer: asyncio.Task[None] | None = None
        self._last_purge = 0.0
        self.dropped = 0

    def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_forever(), name="usage-writer")

    def record(self, request: Request, result: Result) -> None:
        """An answer observer: queue the record (never blocks, never raises)."""
        record = self.make_record(request, result)
        if self._on_record is not None:
            self._on_record(record)
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("usage queue full; records dropped", extra={"dropped": self.dropped})

    def make_record(self, request: Request, result: Result) -> UsageRecord:
        task = self._tasks.get(request.task)
        adapter = task.adapter if task is not None else None
        return UsageRecord(
            ts=self._wall(),
            request_id=result.request_id,
            client_id=_client_id(request),
            task=request.task,
            tier=result.tier.value,
            provider=result.provider,
            model=result.model,
            adapter=f"{adapter.name}@{adapter.version}" if adapter is not None else "",
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            latency_ms=round(result.latency_ms, 3),
            confidence=None if result.confidence is None else round(result.confidence, 4),
            escalation=result.escalation.value,
            cost_usd=self._prices.spent(result.tier, result.provider, result.usage),
            reference_cost_usd=self._prices.reference_cost(result.usage),
            prompt=_prompt(request) if self._record_prompts else "",
        )

    async def flush(self) -> None:
        """Wait until every queued record is in the store (returns at once when the writer is not running)."""
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
                await self._store.add(batch)
                await self._maybe_purge()
            except Exception as exc:  # noqa: BLE001 - a store outage loses records, never the writer
                log.warning("usage records not written", extra={"records": len(batch), "error": repr(exc)})
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _maybe_purge(self) -> None:
        now = self._wall()
        if now - self._last_purge >= PURGE_EVERY_S:
            self._last_purge = now
            await self._store.purge(now - self._retention_s)


def _client_id(request: Request) -> str:
    for tag in CLIENT_TAGS:
        value = request.tags.get(tag, "")
        if value:
            return value
    return ""


def _prompt(request: Request) -> str:
    users = [m.content for m in request.messages if m.role is Role.USER]
    return (users[-1] if users else request.messages[-1].content)[:PROMPT_CHARS]
