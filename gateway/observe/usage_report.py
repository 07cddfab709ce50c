"""One report, three readers: GetUsage, the dashboard's /api/usage and `python -m gateway usage`.

Budgets come from the token ledger (exact, shared by replicas); everything else
from the usage store's day summary. Both are read for the same UTC day: today, or
one within [usage] retention_days. Asked for buckets, the report also carries the
day's series (usage_series.py), computed from the day's rows off the event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.core.accuracy import LiveAccuracy
from gateway.core.errors import InvalidArgument
from gateway.observe.usage_series import (
    DaySeries,
    ProviderBurn,
    bucket_series,
    buckets_in,
    burn_rates,
    check_bucket_s,
    exhaustion,
)
from gateway.state.budget.ledger import TokenLedger, next_reset, utc_day
from gateway.state.usage.store import DaySummary, UsageRecord, UsageStore


async def _nothing() -> None:
    return None


@dataclass(frozen=True, slots=True)
class ProviderBudget:
    provider: str
    tokens_used: int
    token_budget: int  # 0 = no limit
    requests: int


@dataclass(frozen=True, slots=True)
class UsageQuery:
    """What GetUsage asks for: whose requests ("" = everyone), which UTC day ("" = today), buckets (0 = none)."""

    client: str = ""
    day: str = ""
    bucket_s: int = 0


@dataclass(frozen=True, slots=True)
class UsageReport:
    day: str
    generated_at: float
    resets_at: str  # ISO UTC: the next midnight, when every budget starts again
    providers: tuple[ProviderBudget, ...]
    summary: DaySummary
    reference_provider: str
    recent: tuple[UsageRecord, ...] = ()
    client: str = ""  # the caller the figures are limited to; "" = everyone
    local_accuracy: tuple[LiveAccuracy, ...] = ()  # learning tasks, from the audit
    series: DaySeries | None = None  # when asked for buckets

    def to_json(self, *, show_prompts: bool) -> dict[str, Any]:
        s = self.summary
        return {
            "day": self.day,
            "client": self.client,
            "generated_at": self.generated_at,
            "resets_at": self.resets_at,
            "providers": [
                {
                    "provider": p.provider,
                    "tokens_used": p.tokens_used,
                    "token_budget": p.token_budget,
                    "requests": p.requests,
                }
                for p in self.providers
            ],
            "requests": s.requests,
            "requests_by_tier": dict(s.requests_by_tier),
            "requests_by_provider": dict(s.requests_by_provider),
            "escalations_by_reason": dict(s.escalations_by_reason),
            "tokens_by_tier": dict(s.tokens_by_tier),
            "cached_prompt_tokens": s.cached_prompt_tokens,
            "cache_write_tokens": s.cache_write_tokens,
            "latency_ms": {"count": s.latency.count, **s.latency.percentiles_ms, "max": s.latency.max_ms},
            "overhead_ms": {"count": s.overhead.count, **s.overhead.percentiles_ms, "max": s.overhead.max_ms},
            "cost_usd": s.cost_usd,
            "reference_cost_usd": s.reference_cost_usd,
            "saved_usd": s.saved_usd,
            "reference_provider": self.reference_provider,
            "recent": [_recent_row(r, show_prompts) for r in self.recent],
            "local_accuracy": [
                {
                    "task": a.task,
                    "audited": a.audited,
                    "agreed": a.agreed,
                    "estimate": None if a.audited == 0 else a.estimate,
                    "low": a.low,
                    "high": a.high,
                    "threshold": a.threshold,
                    "target": a.target,
                }
                for a in self.local_accuracy
            ],
        }


async def no_accuracy() -> Sequence[LiveAccuracy]:
    """No task is audited."""
    return ()


def no_threshold(_: str) -> float:
    return 0.0


class UsageReporter:
    def __init__(
        self,
        ledger: TokenLedger,
        store: UsageStore,
        budgets: Mapping[str, int],
        *,
        reference_provider: str = "",
        flush: Callable[[], Awaitable[None]] = _nothing,
        accuracy: Callable[[], Awaitable[Sequence[LiveAccuracy]]] = no_accuracy,
        threshold: Callable[[str], float] = no_threshold,
        retention_days: int = 0,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`threshold`: a task's confidence threshold in force; `retention_days`: how far back a day may be (0: any)."""
        self._ledger = ledger
        self._store = store
        self._budgets = dict(budgets)
        self._reference = reference_provider
        self._flush = flush
        self._accuracy = accuracy
        self._threshold = threshold
        self._retention_days = retention_days
        self._wall = wall

    async def report(self, *, recent: int = 0, client: str = "", day: str = "", bucket_s: int = 0) -> UsageReport:
        """Waits for this process's queued records first, so its own answers are always counted.

        `client`: only the requests of this caller (API key name or certificate subject); "" = everyone's.
        Provider budgets are the providers' whatever the filter. `day`: YYYY-MM-DD (UTC), "" = today;
        recent requests are listed for today only. `bucket_s` > 0: with the day's series in buckets of it.
        InvalidArgument names the field when `day` or `bucket_s` is not one to report.
        """
        now = self._wall()
        today = utc_day(now)
        day = day or today
        self.check_day(day, today)
        if bucket_s:
            check_bucket_s(bucket_s)
        await self._flush()
        providers = await self.budgets(day)
        summary = await self._store.summary(day, client=client)
        listed = await self._store.recent(recent, client=client) if recent > 0 and day == today else []
        rows = tuple(r for r in listed if r.day == day)  # the day's own: none from before midnight
        series = await self._series(day, client, bucket_s, now, providers) if bucket_s else None
        return UsageReport(
            day=day,
            generated_at=time.time(),
            resets_at=next_reset(now).strftime("%Y-%m-%dT%H:%M:%SZ"),
            providers=providers,
            summary=summary,
            reference_provider=self._reference,
            recent=rows,
            client=client,
            local_accuracy=tuple(await self._accuracy()),
            series=series,
        )

    def days(self) -> tuple[str, str]:
        """The oldest day that can be reported (retention) and today, both UTC."""
        today = self._wall().date()
        oldest = today - timedelta(days=self._retention_days or 366)
        return oldest.isoformat(), today.isoformat()

    def check_day(self, day: str, today: str) -> None:
        """InvalidArgument unless `day` is a UTC date from the retention period up to today."""
        try:
            date = datetime.strptime(day, "%Y-%m-%d").date()
        except ValueError:
            raise InvalidArgument(f"day: {day!r} is not a date; use YYYY-MM-DD (UTC)") from None
        if day > today:
            raise InvalidArgument(f"day: {day} is after today ({today}, UTC)")
        oldest = datetime.strptime(today, "%Y-%m-%d").date() - timedelta(days=self._retention_days)
        if self._retention_days and date < oldest:
            raise InvalidArgument(
                f"day: {day} is before {oldest.isoformat()}; usage records are kept {self._retention_days} days "
                "([usage] retention_days)"
            )

    async def _series(
        self, day: str, client: str, bucket_s: int, now: datetime, providers: Sequence[ProviderBudget]
    ) -> DaySeries:
        rows = await self._store.day_rows(day)
        at = now.timestamp()

        def compute() -> DaySeries:
            series = bucket_series(
                rows, client=client, bucket_s=bucket_s, buckets=buckets_in(day, bucket_s, at), threshold=self._threshold
            )
            if day != utc_day(now):
                return series
            rates = burn_rates(rows, at)
            reset = next_reset(now).timestamp()
            burn = tuple(
                ProviderBurn(
                    p.provider,
                    rates.get(p.provider, 0.0),
                    exhaustion(p.tokens_used, p.token_budget, rates.get(p.provider, 0.0), now=at, reset=reset),
                )
                for p in providers
            )
            return replace(series, burn=burn)

        return await asyncio.to_thread(compute)

    async def budgets(self, day: str | None = None) -> tuple[ProviderBudget, ...]:
        """Each configured provider's tokens and requests on `day` (default today, UTC) against its budget."""
        day = day or utc_day(self._wall())
        spend = await self._ledger.usage(day)
        return tuple(
            ProviderBudget(
                name,
                spend[name].tokens_used if name in spend else 0,
                budget,
                spend[name].requests if name in spend else 0,
            )
            for name, budget in self._budgets.items()
        )


def _recent_row(record: UsageRecord, show_prompts: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "time": datetime.fromtimestamp(record.ts, UTC).strftime("%H:%M:%S"),
        "request_id": record.request_id,
        "client_id": record.client_id,
        "task": record.task,
        "tier": record.tier,
        "provider": record.provider,
        "model": record.model,
        "adapter": record.adapter,
        "tokens_in": record.prompt_tokens,
        "tokens_out": record.completion_tokens,
        "tokens_cached": record.cached_prompt_tokens,
        "tokens_cache_write": record.cache_write_tokens,
        "latency_ms": record.latency_ms,
        "overhead_ms": record.overhead_ms,
        "confidence": record.confidence,
        "escalation": record.escalation,
        "cost_usd": record.cost_usd,
    }
    if show_prompts:
        row["prompt"] = record.prompt
    return row


def series_json(report: UsageReport) -> dict[str, Any]:
    """The day's series as compact arrays (the dashboard's /api/usage/series), with the budgets they burn."""
    series = report.series
    if series is None:
        raise ValueError("the report was made without buckets")
    return {
        "day": series.day,
        "client": series.client,
        "generated_at": report.generated_at,
        "resets_at": report.resets_at,
        "bucket_s": series.bucket_s,
        "start": series.start,
        "buckets": series.buckets,
        "requests": list(series.requests),
        "requests_by_tier": {k: list(v) for k, v in series.requests_by_tier.items()},
        "escalations_by_reason": {k: list(v) for k, v in series.escalations_by_reason.items()},
        "tokens_by_provider": {k: list(v) for k, v in series.tokens_by_provider.items()},
        "latency_p50_ms": [round(v, 3) for v in series.latency_p50_ms],
        "latency_p99_ms": [round(v, 3) for v in series.latency_p99_ms],
        "cost_usd": [round(v, 9) for v in series.cost_usd],
        "reference_cost_usd": [round(v, 9) for v in series.reference_cost_usd],
        "clients": list(series.clients),
        "tasks": [
            {
                "task": t.task,
                "requests": t.requests,
                "local": t.local,
                "confidence_mean": t.confidence_mean,
                "threshold": t.threshold,
            }
            for t in series.tasks
        ],
        "providers": [
            {"provider": p.provider, "tokens_used": p.tokens_used, "token_budget": p.token_budget}
            for p in report.providers
        ],
        "burn": [
            {
                "provider": b.provider,
                "tokens_per_s": b.tokens_per_s,
                "exhausted_at": None if b.exhausted_at is None else iso_utc(b.exhausted_at),
            }
            for b in series.burn
        ],
    }


def iso_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
