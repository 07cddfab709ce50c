"""One report, three readers: GetUsage, the dashboard's /api/usage and `python -m gateway usage`.

Budgets come from the token ledger (exact, shared by replicas); everything else
from the usage store's day summary. Both are read for the same UTC day.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.core.accuracy import LiveAccuracy
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
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ledger = ledger
        self._store = store
        self._budgets = dict(budgets)
        self._reference = reference_provider
        self._flush = flush
        self._accuracy = accuracy
        self._wall = wall

    async def report(self, *, recent: int = 0, client: str = "") -> UsageReport:
        """Waits for this process's queued records first, so its own answers are always counted.

        `client`: only the requests of this caller (API key name or certificate subject); "" = everyone's.
        Provider budgets are the providers' whatever the filter.
        """
        await self._flush()
        now = self._wall()
        day = utc_day(now)
        providers = await self.budgets(day)
        summary = await self._store.summary(day, client=client)
        rows = tuple(await self._store.recent(recent, client=client)) if recent > 0 else ()
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
        )

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
        "latency_ms": record.latency_ms,
        "overhead_ms": record.overhead_ms,
        "confidence": record.confidence,
        "escalation": record.escalation,
        "cost_usd": record.cost_usd,
    }
    if show_prompts:
        row["prompt"] = record.prompt
    return row
