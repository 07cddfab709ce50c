"""The HTTP side port: the dashboard page, /api/usage and the metrics the operations guide names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.api import http
from gateway.api.dashboard import Dashboard
from gateway.core.contracts import Escalation, Request, Result, Tier, Usage
from gateway.core.errors import Unavailable
from gateway.observe.metrics import Metrics
from gateway.observe.metrics_refresh import MetricsRefresher
from gateway.observe.usage_report import UsageReporter
from gateway.state.breaker.machine import BreakerState
from gateway.state.budget.memory import MemoryLedger
from gateway.state.cache.memory import MemoryCache
from gateway.state.usage.sqlite import SqliteUsageStore
from tests.unit.test_usage import REQUEST

Client = TestClient[web.Request, web.Application]
METRIC_NAMES = [
    "gateway_requests_total",
    "gateway_request_outcomes_total",
    "gateway_request_latency_seconds_bucket",
    "gateway_provider_latency_seconds_bucket",
    "gateway_local_in_flight",
    "gateway_local_batch_size_bucket",
    "gateway_cache_lookups_total",
    "gateway_cache_hit_ratio",
    "gateway_cache_entries",
    "gateway_budget_tokens_used",
    "gateway_budget_tokens_limit",
    "gateway_breaker_state",
    "gateway_cost_usd_total",
    "gateway_reference_cost_usd_total",
    "gateway_local_accuracy",
    "gateway_local_audits",
    "gateway_task_threshold",
]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[tuple[Client, Metrics]]:
    metrics = Metrics()
    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    ledger = MemoryLedger()
    await ledger.reserve("openai", 300, day=datetime.now(UTC).strftime("%Y-%m-%d"), limit=1000)
    reporter = UsageReporter(ledger, store, {"openai": 1000}, retention_days=30)
    cache = MemoryCache(max_entries=10)

    async def breakers() -> dict[str, BreakerState]:
        return {"openai": BreakerState.OPEN}

    refresher = MetricsRefresher(metrics, budgets=reporter.budgets, breakers=breakers, cache=cache)
    dashboard = Dashboard(reporter, refresh_s=1.5, recent=5, show_prompts=False)
    app = http.build_app(metrics, lambda: True, before_scrape=refresher, dashboard=dashboard)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, metrics
    await store.aclose()


async def test_the_page_is_served_at_the_root(client: tuple[Client, Metrics]) -> None:
    response = await client[0].get("/")
    assert response.status == 200 and response.content_type == "text/html"
    page = await response.text()
    assert "/api/usage" in page and 'id="budgets"' in page and 'id="accuracy"' in page


async def test_api_usage_reports_budgets_and_the_refresh_interval(client: tuple[Client, Metrics]) -> None:
    body = await (await client[0].get("/api/usage")).json()
    assert body["refresh_s"] == 1.5
    assert body["providers"] == [{"provider": "openai", "tokens_used": 300, "token_budget": 1000, "requests": 1}]
    assert body["requests"] == 0 and body["recent"] == []


async def test_api_usage_takes_a_day_and_says_which_days_it_can(client: tuple[Client, Metrics]) -> None:
    body = await (await client[0].get("/api/usage")).json()
    today = datetime.now(UTC).date()
    assert body["today"] == body["day"] == today.isoformat() and body["oldest_day"] < body["today"]
    yesterday = (today - timedelta(days=1)).isoformat()
    past = await (await client[0].get("/api/usage", params={"day": yesterday})).json()
    assert past["day"] == yesterday and past["providers"][0]["tokens_used"] == 0


async def test_api_usage_series_is_bucketed_here(client: tuple[Client, Metrics]) -> None:
    before = datetime.now(UTC).hour
    body = await (await client[0].get("/api/usage/series", params={"bucket_s": "3600"})).json()
    assert body["bucket_s"] == 3600 and body["buckets"] in {before + 1, datetime.now(UTC).hour + 1}
    assert body["requests"] == [0] * body["buckets"] and body["tasks"] == [] and body["clients"] == []
    assert body["providers"] == [{"provider": "openai", "tokens_used": 300, "token_budget": 1000}]
    (burn,) = body["burn"]
    assert burn == {"provider": "openai", "tokens_per_s": 0.0, "exhausted_at": None}
    assert (await (await client[0].get("/api/usage/series")).json())["bucket_s"] == 60


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/api/usage", {"day": "tomorrow"}, "day"),
        ("/api/usage/series", {"day": "2001-01-01"}, "day"),
        ("/api/usage/series", {"bucket_s": "45"}, "bucket_s"),
        ("/api/usage/series", {"bucket_s": "1e3"}, "bucket_s"),
        ("/api/usage/series", {"client": "a b"}, "client"),
    ],
)
async def test_a_bad_query_is_a_400_naming_the_parameter(
    client: tuple[Client, Metrics], path: str, params: dict[str, str], param: str
) -> None:
    response = await client[0].get(path, params=params)
    assert response.status == 400
    error = (await response.json())["error"]
    assert error["param"] == param and error["message"].startswith(f"{param}: ")


async def test_metrics_carry_every_documented_name(client: tuple[Client, Metrics]) -> None:
    test_client, metrics = client
    hit = Result("r", "up", Tier.CACHE, "openai", "m", None, Escalation.NONE, Usage(3, 1), (), "stop", 0.4)
    metrics.answered(REQUEST, hit)
    metrics.failed(REQUEST, Unavailable("no tier"), 0.1)
    metrics.cache_lookup("hit")
    metrics.cache_lookup("miss")
    metrics.costs("openai", 0.01, 0.02)
    metrics.on_batch(4, 0.2)
    metrics.accuracy("trend", audited=40, estimate=0.9, low=0.77, high=0.96, threshold=0.72)
    text = await (await test_client.get("/metrics")).text()
    for name in METRIC_NAMES:
        assert name in text, name
    assert 'gateway_budget_tokens_used{provider="openai"} 300.0' in text
    assert 'gateway_breaker_state{provider="openai"} 2.0' in text
    assert "gateway_cache_hit_ratio 0.5" in text
    assert 'gateway_local_accuracy{bound="low",task="trend"} 0.77' in text
    assert 'gateway_task_threshold{task="trend"} 0.72' in text
    assert 'gateway_request_outcomes_total{outcome="unavailable",provider="none",tier="none"} 1.0' in text


def test_each_answer_counts_once_under_its_outcome() -> None:
    metrics = Metrics()
    request = Request(request_id="x", messages=REQUEST.messages, max_tokens=1)
    result = Result("x", "", Tier.LOCAL, "echo", "echo", 1.0, Escalation.NONE, Usage(), (), "stop", 0.1)
    for _ in range(100):
        metrics.answered(request, result)
    assert b'gateway_request_outcomes_total{outcome="ok",provider="echo",tier="local"} 100.0' in metrics.render()
