"""Gauges read from shared state when /metrics is scraped: budgets, breaker states, cache size.

Each source is optional and a failing one is logged, never a failed scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from gateway.observe.metrics import Metrics
from gateway.observe.usage_report import ProviderBudget
from gateway.state.breaker.machine import STATE_VALUES, BreakerState
from gateway.state.cache.store import Cache

log = logging.getLogger(__name__)

BudgetSource = Callable[[], Awaitable[tuple[ProviderBudget, ...]]]
BreakerSource = Callable[[], Awaitable[Mapping[str, BreakerState]]]


class MetricsRefresher:
    def __init__(
        self,
        metrics: Metrics,
        *,
        budgets: BudgetSource | None = None,
        breakers: BreakerSource | None = None,
        cache: Cache | None = None,
    ) -> None:
        self._metrics = metrics
        self._budgets = budgets
        self._breakers = breakers
        self._cache = cache

    async def __call__(self) -> None:
        try:
            if self._budgets is not None:
                rows = await self._budgets()
                self._metrics.budgets({r.provider: (r.tokens_used, r.token_budget) for r in rows})
            if self._breakers is not None:
                states = await self._breakers()
                self._metrics.breakers({name: STATE_VALUES[state] for name, state in states.items()})
            if self._cache is not None:
                self._metrics.cache_entries.set(await self._cache.size())
        except Exception as exc:  # noqa: BLE001 - a state store outage must not break the scrape
            log.warning("metrics refresh failed", extra={"error": repr(exc)})
