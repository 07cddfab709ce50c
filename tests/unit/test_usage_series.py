"""The day in time buckets: series, per-task figures, burn rates and the projected exhaustion of budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.core.errors import InvalidArgument
from gateway.observe.usage_report import UsageReporter, series_json
from gateway.observe.usage_series import bucket_series, buckets_in, burn_rates, check_bucket_s, exhaustion
from gateway.state.budget.memory import MemoryLedger
from gateway.state.usage.sqlite import SqliteUsageStore
from gateway.state.usage.store import UsageRecord, day_rows_from_records

DAY = "2026-11-18"
MIDNIGHT = datetime(2026, 11, 18, tzinfo=UTC).timestamp()
NOON = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
BASE = UsageRecord(
    ts=MIDNIGHT,
    request_id="r",
    client_id="desk-1",
    task="trend",
    tier="local",
    provider="echo",
    model="echo",
    adapter="",
    prompt_tokens=10,
    completion_tokens=2,
    latency_ms=1.0,
    confidence=0.9,
    escalation="none",
    cost_usd=0.0,
    reference_cost_usd=0.001,
)


def remote(ts: float, client: str = "desk-1", tokens: int = 100, reason: str = "rule") -> UsageRecord:
    return replace(
        BASE,
        ts=ts,
        client_id=client,
        tier="remote",
        provider="openai",
        prompt_tokens=tokens,
        completion_tokens=0,
        confidence=None,
        escalation=reason,
        cost_usd=0.01,
        reference_cost_usd=0.01,
        latency_ms=200.0,
    )


def three_minutes() -> list[UsageRecord]:
    """Minute 0: three local answers (1, 2, 3 ms); minute 1: nothing; minute 2: a remote and a cache answer."""
    return [
        replace(BASE, ts=MIDNIGHT + 5, latency_ms=3.0, confidence=0.5),
        replace(BASE, ts=MIDNIGHT + 10, latency_ms=1.0, confidence=0.7),
        replace(BASE, ts=MIDNIGHT + 59.9, latency_ms=2.0, task="", confidence=None),
        remote(MIDNIGHT + 120, reason="low_confidence"),
        replace(BASE, ts=MIDNIGHT + 130, tier="cache", client_id="desk-2", latency_ms=0.5),
    ]


def threshold(task: str) -> float:
    return {"trend": 0.8}.get(task, 0.6)


def test_each_bucket_counts_its_own_requests_latency_and_cost() -> None:
    series = bucket_series(
        day_rows_from_records(DAY, three_minutes()), client="", bucket_s=60, buckets=3, threshold=threshold
    )
    assert (series.start, series.buckets) == (MIDNIGHT, 3)
    assert series.requests == (3, 0, 2)
    assert series.requests_by_tier == {"cache": (0, 0, 1), "local": (3, 0, 0), "remote": (0, 0, 1)}
    assert series.escalations_by_reason == {"low_confidence": (0, 0, 1)}
    assert series.tokens_by_provider == {"openai": (0, 0, 100)}
    assert series.latency_p50_ms == (2.0, 0.0, 0.5) and series.latency_p99_ms == (3.0, 0.0, 200.0)
    assert series.cost_usd == (0.0, 0.0, 0.01)
    assert series.reference_cost_usd == pytest.approx((0.003, 0.0, 0.011))
    assert series.clients == ("desk-1", "desk-2")
    general, trend = series.tasks
    assert (general.task, general.requests, general.local, general.confidence_mean, general.threshold) == (
        "",
        1,
        1,
        None,
        0.6,
    )
    assert (trend.requests, trend.local, trend.threshold) == (4, 2, 0.8)
    assert trend.confidence_mean == pytest.approx((0.5 + 0.7 + 0.9) / 3)


def test_one_client_gets_its_own_figures_but_every_clients_provider_tokens() -> None:
    rows = day_rows_from_records(DAY, [*three_minutes(), remote(MIDNIGHT + 61, client="desk-2", tokens=40)])
    series = bucket_series(rows, client="desk-2", bucket_s=60, buckets=3, threshold=threshold)
    assert series.requests == (0, 1, 1)
    assert series.requests_by_tier == {"cache": (0, 0, 1), "remote": (0, 1, 0)}
    assert series.tokens_by_provider == {"openai": (0, 40, 100)}  # desk-1's 100 tokens burn the same budget
    assert series.clients == ("desk-1", "desk-2")


def test_rows_past_the_last_bucket_count_in_it() -> None:
    rows = day_rows_from_records(DAY, three_minutes())
    series = bucket_series(rows, client="", bucket_s=60, buckets=2, threshold=threshold)
    assert series.requests == (3, 2)


def test_buckets_run_to_the_current_one_today_and_the_whole_day_before() -> None:
    assert buckets_in(DAY, 60, MIDNIGHT + 30 * 60 + 10) == 31
    assert buckets_in(DAY, 60, MIDNIGHT) == 1
    assert buckets_in(DAY, 60, MIDNIGHT + 3 * 86_400) == 1440
    assert buckets_in(DAY, 3600, MIDNIGHT + 86_399) == 24


@pytest.mark.parametrize("bucket_s", [0, 30, 59, 7000, 86_401])
def test_a_bucket_size_that_does_not_divide_a_day_is_refused_by_name(bucket_s: int) -> None:
    with pytest.raises(InvalidArgument, match="bucket_s"):
        check_bucket_s(bucket_s)


def test_the_burn_rate_is_the_last_hours_remote_tokens_or_since_midnight() -> None:
    rows = day_rows_from_records(DAY, [remote(MIDNIGHT + 100, tokens=600), remote(MIDNIGHT + 7000, tokens=360)])
    assert burn_rates(rows, MIDNIGHT + 1200) == {"openai": pytest.approx(600 / 1200)}  # 20 minutes into the day
    assert burn_rates(rows, MIDNIGHT + 7200) == {"openai": pytest.approx(360 / 3600)}
    assert burn_rates(rows, MIDNIGHT + 20_000) == {}


def test_exhaustion_is_projected_at_the_burn_rate_before_the_reset() -> None:
    now, reset = MIDNIGHT + 3600, MIDNIGHT + 86_400
    assert exhaustion(1000, 5000, 1.0, now=now, reset=reset) == now + 4000
    assert exhaustion(1000, 5000, 0.01, now=now, reset=reset) is None  # not before the reset
    assert exhaustion(1000, 5000, 0.0, now=now, reset=reset) is None
    assert exhaustion(5000, 5000, 0.0, now=now, reset=reset) == now  # already spent
    assert exhaustion(1000, 0, 5.0, now=now, reset=reset) is None  # no budget


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteUsageStore]:
    made = SqliteUsageStore(tmp_path / "usage.sqlite3")
    yield made
    await made.aclose()


async def test_the_report_carries_the_series_that_add_up_to_its_day(store: SqliteUsageStore) -> None:
    ledger = MemoryLedger(wall=NOON.timestamp)
    reservation = await ledger.reserve("openai", 4600, day=DAY, limit=5000)
    assert reservation is not None
    await ledger.reconcile(reservation, 4600)
    await store.add([*three_minutes(), remote(NOON.timestamp() - 60, tokens=360)])
    reporter = UsageReporter(ledger, store, {"openai": 5000}, threshold=threshold, wall=lambda: NOON)

    report = await reporter.report(bucket_s=60)

    series = report.series
    assert series is not None and series.buckets == 12 * 60 + 1
    assert sum(series.requests) == report.summary.requests == 6
    assert sum(series.cost_usd) == pytest.approx(report.summary.cost_usd)
    assert sum(series.reference_cost_usd) == pytest.approx(report.summary.reference_cost_usd)
    (burn,) = series.burn
    assert burn.tokens_per_s == pytest.approx(360 / 3600)
    assert burn.exhausted_at == pytest.approx(NOON.timestamp() + 400 / (360 / 3600))  # 4000 s from noon
    body = series_json(report)
    assert body["burn"] == [
        {"provider": "openai", "tokens_per_s": burn.tokens_per_s, "exhausted_at": "2026-11-18T13:06:40Z"}
    ]
    assert body["providers"] == [{"provider": "openai", "tokens_used": 4600, "token_budget": 5000}]
    assert len(body["requests"]) == 721 and body["clients"] == ["desk-1", "desk-2"]


async def test_another_day_is_reported_without_recent_requests_or_a_projection(store: SqliteUsageStore) -> None:
    await store.add([replace(r, ts=r.ts - 86_400) for r in three_minutes()])
    await store.add(three_minutes()[:1])
    reporter = UsageReporter(MemoryLedger(), store, {"openai": 5000}, retention_days=30, wall=lambda: NOON)

    report = await reporter.report(day="2026-11-17", recent=10, bucket_s=3600)

    assert (report.day, report.summary.requests, report.recent) == ("2026-11-17", 5, ())
    assert report.series is not None and report.series.buckets == 24 and report.series.burn == ()
    assert [r.day for r in (await reporter.report(recent=10)).recent] == [DAY]


@pytest.mark.parametrize(
    ("day", "message"),
    [
        ("18/11/2026", "not a date; use YYYY-MM-DD"),
        ("2026-11-19", "after today"),
        ("2026-10-18", "kept 30 days"),
    ],
)
async def test_a_day_outside_the_retention_or_not_a_date_is_refused_by_name(
    store: SqliteUsageStore, day: str, message: str
) -> None:
    reporter = UsageReporter(MemoryLedger(), store, {}, retention_days=30, wall=lambda: NOON)
    with pytest.raises(InvalidArgument, match=f"day: .*{message}"):
        await reporter.report(day=day)
    assert (await reporter.report(day="2026-10-19")).day == "2026-10-19"  # the oldest day kept
