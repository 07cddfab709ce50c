"""The request front: the router wrapped in the response cache and in recording, plus what reads the records.

    servicer -> RecordingRouter -> AccessRouter -> CachedRouter -> Router
RecordingRouter sees every answer (hits included) and every failure and feeds
the usage records, metrics, counters and request log, each answer with the
request as it was decided below; AccessRouter applies the caller's API key
(tasks, local-only, quotas) when keys are given; CachedRouter asks the Router to
decide the request and keys the cache on that decision; the UsageReporter reads
the ledger and the usage store for GetUsage, the dashboard and the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from gateway.api.dashboard import Dashboard
from gateway.app.embedding import build_semantic_cache
from gateway.config import Config
from gateway.core.accuracy import LiveAccuracy
from gateway.core.contracts import Request, Result, TaskCatalog
from gateway.core.embedding import Embedder
from gateway.core.trace import NO_TRACER, Tracer
from gateway.observe.metrics import Metrics
from gateway.observe.metrics_refresh import MetricsRefresher
from gateway.observe.pricing import Price, PriceTable, cache_ratios
from gateway.observe.usage_recorder import UsageRecorder
from gateway.observe.usage_report import UsageReporter, no_accuracy
from gateway.remote.estimate import CharEstimator
from gateway.routing.access import AccessRouter, KeyPolicies
from gateway.routing.answerer import Answerer
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.cached_router import CachedRouter
from gateway.routing.recording_router import AnswerObserver, RecordingRouter
from gateway.routing.router import Router
from gateway.state.open import SharedState
from gateway.state.usage.store import UsageRecord

log = logging.getLogger(__name__)
DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Front:
    answerer: Answerer
    recorder: UsageRecorder
    reporter: UsageReporter
    refresher: MetricsRefresher
    dashboard: Dashboard | None

    def start(self) -> None:
        self.recorder.start()

    async def aclose(self) -> None:
        """Write out the queued usage records."""
        await self.recorder.aclose()


def build_front(
    config: Config,
    router: Router,
    tasks: TaskCatalog,
    state: SharedState,
    metrics: Metrics,
    *,
    result_observers: Sequence[Callable[[Result], None]] = (),
    answer_observers: Sequence[AnswerObserver] = (),
    accuracy: Callable[[], Awaitable[Sequence[LiveAccuracy]]] = no_accuracy,
    keys: KeyPolicies | None = None,
    tracer: Tracer = NO_TRACER,
    embedder: Embedder | None = None,
) -> Front:
    prices = price_table(config)

    def costs(record: UsageRecord) -> None:
        metrics.costs(record.provider, record.cost_usd, record.reference_cost_usd)

    recorder = UsageRecorder(
        state.usage,
        tasks,
        prices,
        retention_s=retention_s(config),
        record_prompts=config.usage.record_prompts,
        on_record=costs,
    )
    inner: Answerer = router
    if state.cache is not None:
        policy = CachePolicy.from_config(config)
        semantic = build_semantic_cache(config, embedder, policy, state.redis)
        inner = CachedRouter(
            router, state.cache, policy, on_lookup=metrics.cache_lookup, tracer=tracer, semantic=semantic
        )
    if keys is not None:
        estimate = CharEstimator(config.budget.chars_per_token)
        inner = AccessRouter(inner, keys, state.key_quotas, state.rate_limits, estimate=estimate)
    on_answer: list[AnswerObserver] = [recorder.record, metrics.answered]
    on_answer += answer_observers
    on_answer += [_result_only(observe) for observe in result_observers]
    answerer = RecordingRouter(inner, on_answer=on_answer, on_failure=[metrics.failed], tracer=tracer)
    budgets = {name: p.daily_token_budget for name, p in config.providers.items() if p.enabled}
    reporter = UsageReporter(
        state.ledger,
        state.usage,
        budgets,
        reference_provider=config.usage.reference_provider,
        flush=recorder.flush,
        accuracy=accuracy,
        threshold=lambda task: threshold_in_force(tasks, task, config.routing.default_min_confidence),
        retention_days=config.usage.retention_days,
    )
    refresher = MetricsRefresher(metrics, budgets=reporter.budgets, breakers=state.breakers.states, cache=state.cache)
    dashboard = None
    if config.dashboard.enabled:
        dashboard = Dashboard(
            reporter,
            refresh_s=config.dashboard.refresh_s,
            recent=config.dashboard.recent,
            show_prompts=config.usage.record_prompts,
        )
    return Front(answerer, recorder, reporter, refresher, dashboard)


def _result_only(observe: Callable[[Result], None]) -> AnswerObserver:
    def observer(_: Request, result: Result) -> None:
        observe(result)

    return observer


def threshold_in_force(tasks: TaskCatalog, task: str, default: float) -> float:
    """The task's confidence threshold (its card's or config's, raised by the audit), else the routing default."""
    spec = tasks.get(task) if task else None
    return spec.threshold if spec is not None and spec.threshold is not None else default


def price_table(config: Config) -> PriceTable:
    ratios = {
        name: cache_ratios(p.kind or name, p.cached_in_ratio, p.cache_write_ratio)
        for name, p in config.providers.items()
    }
    prices = {
        name: Price(p.price_in_per_mtok, p.price_out_per_mtok, *ratios[name]) for name, p in config.providers.items()
    }
    prices.update(
        {
            name: Price(p.in_per_mtok, p.out_per_mtok, *ratios.get(name, cache_ratios(name)))
            for name, p in config.usage.prices.items()
        }
    )
    reference = config.usage.reference_provider
    if reference and reference not in prices:
        log.warning(
            f"usage.reference_provider '{reference}' has no prices; set [usage.prices.{reference}] "
            "or its provider's price_in_per_mtok / price_out_per_mtok"
        )
    return PriceTable(prices, reference)


def retention_s(config: Config) -> float:
    return config.usage.retention_days * DAY_S
