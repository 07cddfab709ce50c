"""Usage records, one per answered request, and the aggregates the dashboard, CLI and GetUsage show.

Implementations of `UsageStore`: gateway/state/usage/sqlite.py (default),
gateway/state/usage/redis.py (shared by replicas). Both compute the same figures the
same way: per UTC day, latency percentiles by nearest rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

PERCENTILES = (50.0, 90.0, 99.0)


@dataclass(frozen=True, slots=True)
class UsageRecord:
    ts: float  # wall-clock seconds
    request_id: str
    client_id: str
    task: str
    tier: str  # local | remote | cache
    provider: str
    model: str
    adapter: str  # "name@version", empty when none
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    confidence: float | None
    escalation: str  # none | low_confidence | local_capacity | local_error | rule
    cost_usd: float  # what this answer cost (remote tier at the provider's price; local and cache: 0)
    reference_cost_usd: float  # what the reference provider would have charged for the same tokens
    prompt: str = ""  # the last user message, only when [usage] record_prompts = true

    @property
    def day(self) -> str:
        return utc_day_of(self.ts)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def from_json(raw: str | bytes) -> UsageRecord:
        data: dict[str, Any] = json.loads(raw)
        return UsageRecord(**data)


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int = 0
    percentiles_ms: Mapping[str, float] = field(default_factory=dict)  # "p50" -> ms
    max_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class DaySummary:
    """One UTC day of answered requests, across every process writing to the store."""

    day: str
    requests: int = 0
    requests_by_tier: Mapping[str, int] = field(default_factory=dict)
    requests_by_provider: Mapping[str, int] = field(default_factory=dict)
    escalations_by_reason: Mapping[str, int] = field(default_factory=dict)
    tokens_by_tier: Mapping[str, int] = field(default_factory=dict)
    latency: LatencySummary = field(default_factory=LatencySummary)
    cost_usd: float = 0.0
    reference_cost_usd: float = 0.0

    @property
    def saved_usd(self) -> float:
        return max(self.reference_cost_usd - self.cost_usd, 0.0)


class UsageStore(Protocol):
    async def add(self, records: Sequence[UsageRecord]) -> None: ...

    async def summary(self, day: str) -> DaySummary: ...

    async def recent(self, limit: int) -> list[UsageRecord]:
        """The newest records first."""
        ...

    async def purge(self, before_ts: float) -> None:
        """Forget records older than `before_ts` (retention)."""
        ...

    async def aclose(self) -> None: ...


def utc_day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def rank_index(count: int, percentile: float) -> int:
    """Nearest-rank percentile: the 0-based index into the sorted values."""
    return min(max(math.ceil(percentile / 100.0 * count) - 1, 0), count - 1)


def percentile_name(percentile: float) -> str:
    return f"p{percentile:g}"
