"""One UTC day in time buckets, from the day's usage rows: what the dashboard's charts draw and GetUsage returns.

Every series holds one value per bucket; bucket i covers [start + i * bucket_s, start + (i + 1) * bucket_s),
start being the day's midnight (UTC). Latency percentiles are nearest rank within each bucket, as the
day's are. Provider tokens are every client's (budgets are shared); everything else follows `client`.
Pure functions over DayRows; the reporter runs them off the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.core.errors import InvalidArgument
from gateway.state.usage.store import DayRows, rank_index

DAY_S = 86_400
MIN_BUCKET_S = 60
BURN_WINDOW_S = 3600.0  # the burn rate is the provider's tokens over the last hour (or since midnight)


@dataclass(frozen=True, slots=True)
class TaskFigures:
    task: str  # "" = requests without a task
    requests: int
    local: int  # answered by the local tier
    confidence_mean: float | None  # mean local confidence over the requests that have one
    threshold: float  # the threshold in force now (the task's, raised by the audit, or the routing default)


@dataclass(frozen=True, slots=True)
class ProviderBurn:
    provider: str
    tokens_per_s: float  # the provider's remote answers over the last BURN_WINDOW_S (every client)
    exhausted_at: float | None  # unix seconds the budget runs out at that rate; None = not before the reset


@dataclass(frozen=True, slots=True)
class DaySeries:
    day: str
    client: str
    bucket_s: int
    start: float  # the day's midnight, unix seconds
    requests: tuple[int, ...]
    requests_by_tier: Mapping[str, tuple[int, ...]]
    escalations_by_reason: Mapping[str, tuple[int, ...]]
    tokens_by_provider: Mapping[str, tuple[int, ...]]  # remote answers' tokens, every client
    latency_p50_ms: tuple[float, ...]
    latency_p99_ms: tuple[float, ...]
    cost_usd: tuple[float, ...]
    reference_cost_usd: tuple[float, ...]
    clients: tuple[str, ...]  # every client seen that day, whatever `client` is
    tasks: tuple[TaskFigures, ...]
    burn: tuple[ProviderBurn, ...] = ()  # today only

    @property
    def buckets(self) -> int:
        return len(self.requests)


def day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def check_bucket_s(bucket_s: int) -> None:
    if bucket_s < MIN_BUCKET_S or DAY_S % bucket_s:
        raise InvalidArgument(
            f"bucket_s: {bucket_s} is not a bucket size; use at least {MIN_BUCKET_S} seconds dividing a day "
            "(60, 300, 900, 3600, ...)"
        )


def bucket_series(
    rows: DayRows,
    *,
    client: str,
    bucket_s: int,
    buckets: int,
    threshold: Callable[[str], float],
) -> DaySeries:
    """The day's series in `buckets` buckets of `bucket_s` (rows past the last bucket count in it)."""
    start = day_start(rows.day)
    requests = [0] * buckets
    tiers: dict[str, list[int]] = {}
    reasons: dict[str, list[int]] = {}
    tokens: dict[str, list[int]] = {}
    latencies: list[list[float]] = [[] for _ in range(buckets)]
    cost = [0.0] * buckets
    reference = [0.0] * buckets
    tasks: dict[str, _TaskTally] = {}
    for i in range(len(rows)):
        at = min(max(int((rows.ts[i] - start) // bucket_s), 0), buckets - 1)
        tier = rows.tier[i]
        if tier == "remote":
            tokens.setdefault(rows.provider[i], [0] * buckets)[at] += rows.tokens[i]
        if client and rows.client_id[i] != client:
            continue
        requests[at] += 1
        tiers.setdefault(tier, [0] * buckets)[at] += 1
        if rows.escalation[i] != "none":
            reasons.setdefault(rows.escalation[i], [0] * buckets)[at] += 1
        latencies[at].append(rows.latency_ms[i])
        cost[at] += rows.cost_usd[i]
        reference[at] += rows.reference_cost_usd[i]
        tasks.setdefault(rows.task[i], _TaskTally()).add(tier, rows.confidence[i])
    p50, p99 = _percentiles(latencies, 50.0), _percentiles(latencies, 99.0)
    return DaySeries(
        day=rows.day,
        client=client,
        bucket_s=bucket_s,
        start=start,
        requests=tuple(requests),
        requests_by_tier=_frozen(tiers),
        escalations_by_reason=_frozen(reasons),
        tokens_by_provider=_frozen(tokens),
        latency_p50_ms=p50,
        latency_p99_ms=p99,
        cost_usd=tuple(cost),
        reference_cost_usd=tuple(reference),
        clients=tuple(sorted({c for c in rows.client_id if c})),
        tasks=tuple(tally.figures(task, threshold(task)) for task, tally in sorted(tasks.items())),
    )


def burn_rates(rows: DayRows, now: float, window_s: float = BURN_WINDOW_S) -> dict[str, float]:
    """Tokens per second each provider's remote answers used over the last `window_s` (or since midnight)."""
    start = day_start(rows.day)
    since = max(now - window_s, start)
    span = now - since
    if span <= 0:
        return {}
    used: dict[str, int] = {}
    for i in range(len(rows)):
        if rows.tier[i] == "remote" and since <= rows.ts[i] <= now:
            used[rows.provider[i]] = used.get(rows.provider[i], 0) + rows.tokens[i]
    return {provider: tokens / span for provider, tokens in used.items()}


def exhaustion(used: int, budget: int, tokens_per_s: float, *, now: float, reset: float) -> float | None:
    """When a budget runs out at `tokens_per_s` (now, if it has); None: not before the reset, or no budget."""
    if budget <= 0:
        return None
    if used >= budget:
        return now
    if tokens_per_s <= 0:
        return None
    at = now + (budget - used) / tokens_per_s
    return at if at < reset else None


@dataclass(slots=True)
class _TaskTally:
    requests: int = 0
    local: int = 0
    confident: int = 0
    confidence_sum: float = 0.0

    def add(self, tier: str, confidence: float | None) -> None:
        self.requests += 1
        self.local += tier == "local"
        if confidence is not None:
            self.confident += 1
            self.confidence_sum += confidence

    def figures(self, task: str, threshold: float) -> TaskFigures:
        mean = self.confidence_sum / self.confident if self.confident else None
        return TaskFigures(task, self.requests, self.local, mean, threshold)


def _percentiles(groups: Sequence[list[float]], percentile: float) -> tuple[float, ...]:
    """Nearest rank in each bucket; 0 where a bucket is empty."""
    out = []
    for values in groups:
        values.sort()
        out.append(values[rank_index(len(values), percentile)] if values else 0.0)
    return tuple(out)


def _frozen(series: dict[str, list[int]]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(values) for name, values in sorted(series.items())}


def buckets_in(day: str, bucket_s: int, now: float) -> int:
    """How many buckets the day has so far: all of them for a past day, up to the current one today."""
    elapsed = now - day_start(day)
    whole = DAY_S // bucket_s
    return whole if elapsed >= DAY_S else max(min(math.floor(elapsed / bucket_s) + 1, whole), 1)
