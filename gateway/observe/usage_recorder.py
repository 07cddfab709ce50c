"""Turns each answer into a UsageRecord and writes them to the store in batches, off the request path.

`record(request, result)` only queues; a BatchWriter (batch_writer.py) writes
the batches and applies retention once an hour.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.core.contracts import Request, Result, Role, TaskCatalog
from gateway.observe.batch_writer import BatchWriter
from gateway.observe.pricing import PriceTable
from gateway.state.usage.store import UsageRecord, UsageStore

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
        self._wall = wall
        self._writer: BatchWriter[UsageRecord] = BatchWriter(
            store.add,
            name="usage",
            maintain=self._purge,
            maintain_every_s=PURGE_EVERY_S,
            max_queue=max_queue,
            max_batch=max_batch,
            linger_s=linger_s,
            wall=wall,
        )

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def start(self) -> None:
        self._writer.start()

    def record(self, request: Request, result: Result) -> None:
        """An answer observer: queue the record (never blocks, never raises)."""
        record = self.make_record(request, result)
        if self._on_record is not None:
            self._on_record(record)
        self._writer.put(record)

    def make_record(self, request: Request, result: Result) -> UsageRecord:
        task = self._tasks.get(request.task)
        adapter = task.adapter if task is not None else None
        return UsageRecord(
            ts=self._wall(),
            request_id=result.request_id,
            client_id=client_id(request),
            task=request.task,
            tier=result.tier.value,
            provider=result.provider,
            model=result.model,
            adapter=f"{adapter.name}@{adapter.version}" if adapter is not None else "",
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            latency_ms=round(result.latency_ms, 3),
            overhead_ms=round(result.overhead_ms, 3),
            confidence=None if result.confidence is None else round(result.confidence, 4),
            escalation=result.escalation.value,
            cost_usd=self._prices.spent(result.tier, result.provider, result.usage),
            reference_cost_usd=self._prices.reference_cost(result.usage),
            prompt=_prompt(request) if self._record_prompts else "",
            cached_prompt_tokens=result.usage.cached_prompt_tokens,
            cache_write_tokens=result.usage.cache_write_tokens,
        )

    async def flush(self) -> None:
        """Wait until every queued record is in the store (returns at once when the writer is not running)."""
        await self._writer.flush()

    async def aclose(self) -> None:
        await self._writer.aclose()

    async def _purge(self) -> None:
        await self._store.purge(self._wall() - self._retention_s)


def client_id(request: Request) -> str:
    """Who sent it: the authenticated key or certificate name, else the `client_id` (or `client`) tag; "" when none."""
    if request.client:
        return request.client
    for tag in CLIENT_TAGS:
        value = request.tags.get(tag, "")
        if value:
            return value
    return ""


def _prompt(request: Request) -> str:
    users = [m.content for m in request.messages if m.role is Role.USER]
    return (users[-1] if users else request.messages[-1].content)[:PROMPT_CHARS]
