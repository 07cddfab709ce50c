"""Every usage store passes the same tests: day aggregates, exact percentiles, recent, retention."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.state.usage.redis import RedisUsageStore
from gateway.state.usage.sqlite import SqliteUsageStore
from gateway.state.usage.store import UsageRecord, UsageStore
from tests.state.backends import Closer, Site

T0 = 1_795_000_000.0  # 2026-11-18T08:26:40Z
DAY = "2026-11-18"
pytestmark = pytest.mark.parametrize("where", ["sqlite", "redis"], indirect=True)
BASE = UsageRecord(
    ts=T0,
    request_id="r",
    client_id="desk-1",
    task="trend",
    tier="local",
    provider="echo",
    model="echo",
    adapter="trend@3",
    prompt_tokens=10,
    completion_tokens=2,
    latency_ms=1.0,
    confidence=0.9,
    escalation="none",
    cost_usd=0.0,
    reference_cost_usd=0.001,
)


@pytest.fixture
def store(where: Site, closing: Closer) -> UsageStore:
    if where.backend == "redis":
        return closing(RedisUsageStore(where.redis, prefix=where.prefix, retention_days=30))
    return closing(SqliteUsageStore(where.path / "usage.sqlite3"))


def records() -> list[UsageRecord]:
    """100 answers on one day: 60 local, 25 cache, 15 remote (10 low confidence, 5 by rule); latency 1..100 ms."""
    out = []
    for i in range(100):
        tier, provider, escalation, cost = "local", "echo", "none", 0.0
        if 60 <= i < 85:
            tier = "cache"
        elif i >= 85:
            tier, provider, cost = "remote", "openai", 0.002
            escalation = "low_confidence" if i < 95 else "rule"
        out.append(
            replace(
                BASE,
                ts=T0 + i,
                request_id=f"r{i}",
                tier=tier,
                provider=provider,
                escalation=escalation,
                cost_usd=cost,
                latency_ms=float(100 - i),  # written out of order on purpose
            )
        )
    return out


async def test_day_summary_counts_every_dimension(store: UsageStore) -> None:
    await store.add(records()[:50])
    await store.add(records()[50:])
    s = await store.summary(DAY)
    assert s.requests == 100
    assert s.requests_by_tier == {"local": 60, "cache": 25, "remote": 15}
    assert s.requests_by_provider == {"echo": 85, "openai": 15}
    assert s.escalations_by_reason == {"low_confidence": 10, "rule": 5}
    assert s.tokens_by_tier == {"local": 720, "cache": 300, "remote": 180}
    assert s.cost_usd == pytest.approx(15 * 0.002)
    assert s.reference_cost_usd == pytest.approx(100 * 0.001)
    assert s.saved_usd == pytest.approx(0.1 - 0.03)


async def test_prompt_cache_reads_and_writes_are_summed_apart_and_kept_per_record(store: UsageStore) -> None:
    cached = [
        replace(BASE, request_id=f"c{i}", ts=T0 + i, cached_prompt_tokens=5, cache_write_tokens=i) for i in range(4)
    ]
    await store.add([BASE, *cached])
    s = await store.summary(DAY)
    assert (s.cached_prompt_tokens, s.cache_write_tokens) == (20, 6)
    assert s.tokens_by_tier == {"local": 5 * 12}  # cached tokens stay counted in the prompt, not added to it
    newest = (await store.recent(1))[0]
    assert (newest.cached_prompt_tokens, newest.cache_write_tokens) == (5, 3)


async def test_latency_percentiles_are_exact_nearest_rank(store: UsageStore) -> None:
    await store.add(records())
    latency = (await store.summary(DAY)).latency
    assert latency.count == 100
    assert dict(latency.percentiles_ms) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}
    assert latency.max_ms == 100.0


async def test_one_record_is_every_percentile(store: UsageStore) -> None:
    await store.add([replace(BASE, latency_ms=7.5)])
    latency = (await store.summary(DAY)).latency
    assert dict(latency.percentiles_ms) == {"p50": 7.5, "p90": 7.5, "p99": 7.5}


async def test_days_are_separate_and_an_empty_day_is_zero(store: UsageStore) -> None:
    await store.add([BASE, replace(BASE, ts=T0 + 86_400, request_id="tomorrow")])
    assert (await store.summary(DAY)).requests == 1
    assert (await store.summary("2026-11-19")).requests == 1
    empty = await store.summary("2026-01-01")
    assert (empty.requests, dict(empty.requests_by_tier), empty.latency.count, empty.cost_usd) == (0, {}, 0, 0.0)


async def test_recent_lists_newest_first_with_every_field(store: UsageStore) -> None:
    await store.add(records())
    recent = await store.recent(3)
    assert [r.request_id for r in recent] == ["r99", "r98", "r97"]
    assert recent[0] == records()[99]


async def test_purge_forgets_records_before_the_cutoff(store: UsageStore) -> None:
    await store.add(records())
    await store.purge(T0 + 90)
    assert [r.request_id for r in await store.recent(100)] == [f"r{i}" for i in range(99, 89, -1)]


async def test_prompt_text_round_trips_when_recorded(store: UsageStore) -> None:
    await store.add([replace(BASE, prompt="is the trend up? ünïcode")])
    assert (await store.recent(1))[0].prompt == "is the trend up? ünïcode"


async def test_one_clients_summary_and_records_leave_the_others_out(store: UsageStore) -> None:
    """Odd requests came from desk-2: its figures are its own half, the same on every backend."""
    mixed = [replace(r, client_id="desk-2") if i % 2 else r for i, r in enumerate(records())]
    await store.add(mixed)
    everyone = await store.summary(DAY)
    desk2 = await store.summary(DAY, client="desk-2")
    desk1 = await store.summary(DAY, client="desk-1")
    assert everyone.requests == 100 and desk2.requests == 50 and desk1.requests == 50
    assert desk2.requests_by_tier == {"local": 30, "cache": 12, "remote": 8}
    assert desk2.escalations_by_reason == {"low_confidence": 5, "rule": 3}
    assert desk2.tokens_by_tier == {"local": 360, "cache": 144, "remote": 96}
    assert desk2.cost_usd == pytest.approx(8 * 0.002)
    odd_latencies = sorted(float(100 - i) for i in range(1, 100, 2))  # 1, 3, ..., 99 ms
    assert desk2.latency.max_ms == 99.0 and desk2.latency.percentiles_ms["p50"] == odd_latencies[24]
    assert (await store.summary(DAY, client="nobody")).requests == 0
    recent = await store.recent(3, client="desk-2")
    assert [r.request_id for r in recent] == ["r99", "r97", "r95"]
    assert [r.request_id for r in await store.recent(2)] == ["r99", "r98"]


async def test_overhead_percentiles_are_exact_and_apart_from_latency(store: UsageStore) -> None:
    """The gateway's own time per answer (0.01..1.00 ms), summarised like latency, for everyone and per client."""
    mixed = [
        replace(r, overhead_ms=(i + 1) / 100, client_id="desk-2" if i % 2 else "desk-1")
        for i, r in enumerate(records())
    ]
    await store.add(mixed)
    overhead = (await store.summary(DAY)).overhead
    assert overhead.count == 100
    assert dict(overhead.percentiles_ms) == {"p50": 0.5, "p90": 0.9, "p99": 0.99}
    assert overhead.max_ms == 1.0
    desk2 = (await store.summary(DAY, client="desk-2")).overhead
    assert (desk2.count, desk2.max_ms, desk2.percentiles_ms["p50"]) == (50, 1.0, 0.5)
    assert (await store.recent(1))[0].overhead_ms == 1.0


async def test_an_empty_day_has_no_overhead(store: UsageStore) -> None:
    empty = (await store.summary("2026-01-01")).overhead
    assert (empty.count, dict(empty.percentiles_ms), empty.max_ms) == (0, {}, 0.0)


async def test_day_rows_hold_every_clients_records_of_that_day_in_time_order(store: UsageStore) -> None:
    mixed = [replace(r, client_id="desk-2") if i % 2 else r for i, r in enumerate(records())]
    late = replace(BASE, ts=T0 + 500, request_id="late", confidence=None, prompt_tokens=3, completion_tokens=4)
    await store.add([late, replace(BASE, ts=T0 + 86_400, request_id="tomorrow"), *reversed(mixed)])
    rows = await store.day_rows(DAY)
    assert len(rows) == 101 and rows.day == DAY
    assert list(rows.ts) == [T0 + i for i in range(100)] + [T0 + 500]
    assert rows.client_id[:3] == ("desk-1", "desk-2", "desk-1")
    assert (rows.tier[0], rows.tier[60], rows.tier[99]) == ("local", "cache", "remote")
    assert (rows.provider[99], rows.escalation[90], rows.escalation[99]) == ("openai", "low_confidence", "rule")
    assert (rows.tokens[0], rows.tokens[100]) == (12, 7)
    assert (rows.latency_ms[0], rows.latency_ms[99]) == (100.0, 1.0)
    assert (rows.confidence[0], rows.confidence[100]) == (0.9, None)
    assert rows.cost_usd[99] == pytest.approx(0.002) and rows.reference_cost_usd[0] == pytest.approx(0.001)
    assert rows.task == ("trend",) * 101
    assert len(await store.day_rows("2026-11-19")) == 1
    assert len(await store.day_rows("2026-01-01")) == 0
