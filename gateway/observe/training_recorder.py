"""Captures training rows: for tasks with `learn = true`, each request the remote tier answered, with its answer.

`record(request, result)` is an answer observer: it decides, builds the row and
queues it; a BatchWriter writes the batches and trims the store (`max_rows` per
task, `max_age_days`) once an hour. Only answers that left the box are
captured: a LOCAL_ONLY request, anything under `offline = true` or a
`local_only` rule never reaches the remote tier, so it never produces a remote
answer here; a request tagged `learn = "false"` is skipped as well. Audited
answers (gateway/routing/audit.py) become rows too, marked escalation "audit".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Set
from dataclasses import replace

from gateway.core.confidence import choose_label
from gateway.core.contracts import Request, Result, TaskCatalog, Tier
from gateway.core.learning import may_learn_from
from gateway.observe.batch_writer import BatchWriter
from gateway.observe.usage_recorder import client_id
from gateway.state.learning.store import TrainingRow, TrainingStore

TRIM_EVERY_S = 3600.0
DAY_S = 86_400.0


class TrainingRecorder:
    def __init__(
        self,
        store: TrainingStore,
        tasks: TaskCatalog,
        learning_tasks: Set[str],
        *,
        max_rows: int,
        max_age_days: float,
        max_queue: int = 10_000,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._tasks = tasks
        self._learning = frozenset(learning_tasks)
        self._max_rows = max_rows
        self._max_age_s = max_age_days * DAY_S
        self._wall = wall
        self._writer: BatchWriter[TrainingRow] = BatchWriter(
            store.add,
            name="training",
            maintain=self._trim,
            maintain_every_s=TRIM_EVERY_S,
            max_queue=max_queue,
            wall=wall,
        )

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    def start(self) -> None:
        self._writer.start()

    def record(self, request: Request, result: Result) -> None:
        """An answer observer: queue a row when this answer is one to learn from (never blocks, never raises)."""
        if self.captures(request, result):
            self._writer.put(self.make_row(request, result))

    def record_audit(self, request: Request, local: Result, remote: Result) -> None:
        """An audited answer: the remote answer becomes a row, with the local answer it checked."""
        if self.captures(request, remote):
            row = self.make_row(request, remote)
            self._writer.put(
                replace(row, escalation="audit", local_answer=local.text, local_confidence=local.confidence)
            )

    def captures(self, request: Request, result: Result) -> bool:
        """A learning task's remote answer the caller lets us learn from; not a request that uses tools (the rows
        keep text turns, and the local tier takes no tools)."""
        return (
            request.task in self._learning
            and result.tier is Tier.REMOTE
            and may_learn_from(request)
            and not request.uses_tools()
        )

    def make_row(self, request: Request, result: Result) -> TrainingRow:
        task = self._tasks.get(request.task)
        labels = task.labels if task is not None else ()
        return TrainingRow(
            ts=self._wall(),
            task=request.task,
            request_id=result.request_id,
            client_id=client_id(request),
            messages=tuple((m.role.value, m.content) for m in request.messages),
            answer=result.text,
            label=(choose_label(result.text, labels) or "") if labels else "",
            provider=result.provider,
            model=result.model,
            escalation=result.escalation.value,
            local_answer=result.local_text,
            local_confidence=result.confidence,
        )

    async def flush(self) -> None:
        await self._writer.flush()

    async def aclose(self) -> None:
        await self._writer.aclose()

    async def _trim(self) -> None:
        await self._store.trim(max_rows=self._max_rows, older_than=self._wall() - self._max_age_s)
