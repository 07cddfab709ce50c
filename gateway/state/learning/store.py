"""Training rows: what a learning task's escalated request asked and what the remote tier answered.

This is the one store that keeps prompt text, on purpose: it exists only for
tasks with `learn = true`, `[learning] enabled = false` turns it off, and
`python -m gateway learn purge` empties it (docs/operations.md). Rows are kept
within `max_rows` per task and `max_age_days`, oldest dropped first.

Implementations: sqlite.py (default, a file under state_dir readable by its
owner only), redis.py (shared by every replica).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class TrainingRow:
    ts: float  # wall-clock seconds
    task: str
    request_id: str
    client_id: str
    messages: tuple[tuple[str, str], ...]  # (role, content) as the client sent them
    answer: str  # the remote tier's text
    label: str  # for label tasks: the label the remote answer maps to ("" when it maps to none)
    provider: str
    model: str
    escalation: str  # why it went remote: low_confidence, local_capacity, rule, ...
    local_answer: str  # "" when no local answer was produced
    local_confidence: float | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def from_json(raw: str | bytes) -> TrainingRow:
        data: dict[str, Any] = json.loads(raw)
        data["messages"] = tuple((str(role), str(content)) for role, content in data["messages"])
        return TrainingRow(**data)

    def to_jsonl(self, system: str = "") -> str:
        """One line `python -m finetune --data` reads: the messages, the label (or the answer), its time."""
        messages = [{"role": role, "content": content} for role, content in self.messages]
        if system and not any(role == "system" for role, _ in self.messages):
            messages.insert(0, {"role": "system", "content": system})
        line = {
            "messages": messages,
            "label": self.label or self.answer,
            "ts": self.ts,
            "provider": self.provider,
            "model": self.model,
        }
        return json.dumps(line, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One confident local answer that was also asked of the remote tier: did the two agree?"""

    ts: float
    task: str
    threshold: float  # the task's threshold when the local answer was kept
    agreed: bool


@dataclass(frozen=True, slots=True)
class Tally:
    audited: int
    agreed: int


@dataclass(frozen=True, slots=True)
class TaskRows:
    """`learn status` for one task."""

    task: str
    rows: int
    first_ts: float
    last_ts: float
    labels: dict[str, int] = field(default_factory=dict)  # label balance ("" = answers that map to no label)


class TrainingStore(Protocol):
    async def add(self, rows: Sequence[TrainingRow]) -> None: ...

    async def trim(self, *, max_rows: int, older_than: float) -> int:
        """Drop rows and audits older than `older_than` and, per task, the oldest rows beyond `max_rows`;
        how many rows went."""
        ...

    async def status(self) -> list[TaskRows]: ...

    async def rows(self, task: str) -> list[TrainingRow]:
        """Every row of `task`, oldest first."""
        ...

    async def purge(self, task: str | None) -> int:
        """Delete the rows of `task` (None: every task); how many went."""
        ...

    async def add_audits(self, records: Sequence[AuditRecord]) -> None: ...

    async def tally(self, task: str, *, threshold: float, since: float) -> Tally:
        """Audits of `task` at this threshold since `since` (wall-clock seconds), and how many agreed."""
        ...

    async def thresholds(self) -> dict[str, float]:
        """Thresholds raised by the live audit, by `task` or `task@adapter-version` (shared by every replica,
        kept across restarts; `purge(task)` removes both forms)."""
        ...

    async def set_threshold(self, scope: str, threshold: float) -> None: ...

    async def aclose(self) -> None: ...
