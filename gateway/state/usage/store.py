"""Usage records, one per answered request, and the aggregates the dashboard, CLI and GetUsage show.

Implementations of `UsageStore`: gateway/state/usage/sqlite.py (default),
gateway/state/usage/redis.py (shared by replicas). Both compute the same figures the
same way: per UTC day, latency percentiles by nearest rank.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
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
    overhead_ms: float = 0.0  # the gateway's own time (latency less the waits on backends and providers)
    cached_prompt_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache (billed apart)
    cache_write_tokens: int = 0  # of prompt_tokens: written to the provider's prompt cache (billed apart)

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
    overhead: LatencySummary = field(default_factory=LatencySummary)  # the gateway's own time per answer
    cost_usd: float = 0.0
    reference_cost_usd: float = 0.0
    cached_prompt_tokens: int = 0  # prompt tokens providers read from their prompt caches (in tokens_by_tier too)
    cache_write_tokens: int = 0  # prompt tokens providers wrote to their prompt caches (in tokens_by_tier too)

    @property
    def saved_usd(self) -> float:
        return max(self.reference_cost_usd - self.cost_usd, 0.0)


@dataclass(frozen=True, slots=True)
class DayRows:
    """One UTC day's answered requests, column by column, oldest first: what the series over the day come from.

    Row i is (ts[i], client_id[i], ...); `tokens` is prompt + completion tokens.
    """

    day: str
    ts: tuple[float, ...] = ()
    client_id: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    tier: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    escalation: tuple[str, ...] = ()
    tokens: tuple[int, ...] = ()
    latency_ms: tuple[float, ...] = ()
    confidence: tuple[float | None, ...] = ()
    cost_usd: tuple[float, ...] = ()
    reference_cost_usd: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.ts)


DAY_ROW_COLUMNS = (
    "ts",
    "client_id",
    "task",
    "tier",
    "provider",
    "escalation",
    "prompt_tokens + completion_tokens",
    "latency_ms",
    "confidence",
    "cost_usd",
    "reference_cost_usd",
)


ROW_CHUNK = 2000  # rows turned into columns per step: a big day never holds the interpreter lock for long


def day_rows_of(day: str, chunks: Iterable[Sequence[Sequence[Any]]]) -> DayRows:
    """DayRows from chunks of rows whose values are in DAY_ROW_COLUMNS order (already sorted by time)."""
    columns: list[list[Any]] = [[] for _ in DAY_ROW_COLUMNS]
    for chunk in chunks:
        for column, values in zip(columns, zip(*chunk, strict=True), strict=False):
            column.extend(values)
    ts, client, task, tier, provider, escalation, tokens, latency, confidence, cost, ref = map(tuple, columns)
    return DayRows(day, ts, client, task, tier, provider, escalation, tokens, latency, confidence, cost, ref)


def day_rows_from_records(day: str, records: Sequence[UsageRecord]) -> DayRows:
    """DayRows of the records on `day`, in time order."""
    mine = sorted((r for r in records if r.day == day), key=lambda r: r.ts)
    rows = [
        (
            r.ts,
            r.client_id,
            r.task,
            r.tier,
            r.provider,
            r.escalation,
            r.prompt_tokens + r.completion_tokens,
            r.latency_ms,
            r.confidence,
            r.cost_usd,
            r.reference_cost_usd,
        )
        for r in mine
    ]
    return day_rows_of(day, (rows[i : i + ROW_CHUNK] for i in range(0, len(rows), ROW_CHUNK)))


class UsageStore(Protocol):
    async def add(self, records: Sequence[UsageRecord]) -> None: ...

    async def summary(self, day: str, *, client: str = "") -> DaySummary:
        """`client`: only the records with this client_id; "" = every record."""
        ...

    async def recent(self, limit: int, *, client: str = "") -> list[UsageRecord]:
        """The newest records first (`client` as in summary)."""
        ...

    async def day_rows(self, day: str) -> DayRows:
        """Every client's records on `day`, oldest first, in the columns the series need."""
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


def summarize_values(ordered: Sequence[float]) -> LatencySummary:
    """Count, nearest-rank percentiles and maximum of values sorted in ascending order."""
    if not ordered:
        return LatencySummary()
    percentiles = {percentile_name(p): ordered[rank_index(len(ordered), p)] for p in PERCENTILES}
    return LatencySummary(len(ordered), percentiles, ordered[-1])


def summarize(day: str, records: Sequence[UsageRecord]) -> DaySummary:
    """A DaySummary computed from the records themselves (the stores' aggregates give the same figures)."""
    mine = [r for r in records if r.day == day]
    latencies = sorted(r.latency_ms for r in mine)
    overheads = sorted(r.overhead_ms for r in mine)
    by_tier: dict[str, int] = {}
    by_provider: dict[str, int] = {}
    escalations: dict[str, int] = {}
    tokens: dict[str, int] = {}
    for r in mine:
        by_tier[r.tier] = by_tier.get(r.tier, 0) + 1
        by_provider[r.provider] = by_provider.get(r.provider, 0) + 1
        if r.escalation != "none":
            escalations[r.escalation] = escalations.get(r.escalation, 0) + 1
        tokens[r.tier] = tokens.get(r.tier, 0) + r.prompt_tokens + r.completion_tokens
    return DaySummary(
        day=day,
        requests=len(mine),
        requests_by_tier=by_tier,
        requests_by_provider=by_provider,
        escalations_by_reason=escalations,
        tokens_by_tier={tier: total for tier, total in tokens.items() if total},
        latency=summarize_values(latencies),
        overhead=summarize_values(overheads),
        cost_usd=sum(r.cost_usd for r in mine),
        reference_cost_usd=sum(r.reference_cost_usd for r in mine),
        cached_prompt_tokens=sum(r.cached_prompt_tokens for r in mine),
        cache_write_tokens=sum(r.cache_write_tokens for r in mine),
    )
