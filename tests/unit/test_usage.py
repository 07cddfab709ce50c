"""Usage records, prices, the report every reader shares, and the recording decorator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.api.usage_convert import usage_to_proto
from gateway.cli import format_usage
from gateway.core.accuracy import LiveAccuracy, bounds
from gateway.core.contracts import Escalation, Message, Request, Result, Role, Tier, Usage
from gateway.core.errors import ResourceExhausted
from gateway.observe.pricing import Price, PriceTable
from gateway.observe.usage_recorder import UsageRecorder
from gateway.observe.usage_report import UsageReporter
from gateway.routing.recording_router import RecordingRouter
from gateway.state.budget.memory import MemoryLedger
from gateway.state.usage.sqlite import SqliteUsageStore
from gateway.state.usage.store import UsageRecord
from tests.unit.test_cache import ADAPTER, FakeRouter, Tasks

NOW = datetime(2026, 11, 18, 12, 0, tzinfo=UTC)
PRICES = PriceTable({"openai": Price(2.5, 10.0), "anthropic": Price(3.0, 15.0)}, reference="openai")
REQUEST = Request(
    request_id="r1",
    messages=(Message(Role.SYSTEM, "be brief"), Message(Role.USER, "is AAPL trending up?")),
    max_tokens=8,
    task="trend",
    tags={"client_id": "desk-7"},
)


def result(tier: Tier, provider: str, escalation: Escalation = Escalation.NONE, latency_ms: float = 10.0) -> Result:
    return Result("r1", "up", tier, provider, "m", 0.8, escalation, Usage(1000, 200), (), "stop", latency_ms, "trend")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteUsageStore]:
    made = SqliteUsageStore(tmp_path / "usage.sqlite3")
    yield made
    await made.aclose()


def recorder(store: SqliteUsageStore, *, record_prompts: bool = False) -> UsageRecorder:
    return UsageRecorder(store, Tasks(), PRICES, retention_s=86_400, record_prompts=record_prompts, wall=NOW.timestamp)


def test_prices_charge_remote_answers_only_and_compare_everything_with_the_reference() -> None:
    usage = Usage(1_000_000, 100_000)
    assert PRICES.spent(Tier.REMOTE, "anthropic", usage) == pytest.approx(3.0 + 1.5)
    assert PRICES.spent(Tier.LOCAL, "transformers", usage) == 0.0
    assert PRICES.spent(Tier.CACHE, "anthropic", usage) == 0.0
    assert PRICES.spent(Tier.REMOTE, "unpriced", usage) == 0.0
    assert PRICES.reference_cost(usage) == pytest.approx(2.5 + 1.0)
    assert PriceTable({}).reference_cost(usage) == 0.0


def test_a_record_carries_client_task_adapter_tokens_cost_and_no_prompt(store: SqliteUsageStore) -> None:
    record = recorder(store).make_record(REQUEST, result(Tier.REMOTE, "anthropic", Escalation.LOW_CONFIDENCE))
    assert (record.client_id, record.task, record.adapter, record.tier, record.provider) == (
        "desk-7",
        "trend",
        f"{ADAPTER.name}@{ADAPTER.version}",
        "remote",
        "anthropic",
    )
    assert (record.prompt_tokens, record.completion_tokens, record.escalation) == (1000, 200, "low_confidence")
    assert record.cost_usd == pytest.approx((1000 * 3.0 + 200 * 15.0) / 1e6)
    assert record.reference_cost_usd == pytest.approx((1000 * 2.5 + 200 * 10.0) / 1e6)
    assert record.prompt == "" and record.ts == NOW.timestamp()


def test_prompt_text_is_kept_only_when_enabled(store: SqliteUsageStore) -> None:
    record = recorder(store, record_prompts=True).make_record(REQUEST, result(Tier.LOCAL, "transformers"))
    assert record.prompt == "is AAPL trending up?"
    assert recorder(store).make_record(replace(REQUEST, tags={}), result(Tier.LOCAL, "x")).client_id == ""


async def test_records_reach_the_store_in_the_background_and_the_report_adds_them_up(
    store: SqliteUsageStore,
) -> None:
    rec = recorder(store)
    rec.start()
    ledger = MemoryLedger()
    reservation = await ledger.reserve("openai", 1200, day="2026-11-18", limit=5000)
    assert reservation is not None
    rows = [
        result(Tier.LOCAL, "transformers", latency_ms=5.0),
        result(Tier.LOCAL, "transformers", latency_ms=6.0),
        result(Tier.CACHE, "openai", latency_ms=0.5),
        result(Tier.REMOTE, "openai", Escalation.LOW_CONFIDENCE, latency_ms=400.0),
    ]
    for row in rows:
        rec.record(REQUEST, row)
    reporter = UsageReporter(
        ledger, store, {"openai": 5000, "anthropic": 0}, reference_provider="openai", flush=rec.flush, wall=lambda: NOW
    )
    report = await reporter.report(recent=10)
    await rec.aclose()
    s = report.summary
    assert (report.day, s.requests, dict(s.requests_by_tier)) == (
        "2026-11-18",
        4,
        {"local": 2, "cache": 1, "remote": 1},
    )
    assert dict(s.escalations_by_reason) == {"low_confidence": 1}
    assert dict(s.latency.percentiles_ms) == {"p50": 5.0, "p90": 400.0, "p99": 400.0}
    assert s.cost_usd == pytest.approx(0.0045)
    assert s.reference_cost_usd == pytest.approx(4 * 0.0045)
    assert s.saved_usd == pytest.approx(3 * 0.0045)
    assert [(p.provider, p.tokens_used, p.token_budget, p.requests) for p in report.providers] == [
        ("openai", 1200, 5000, 1),
        ("anthropic", 0, 0, 0),
    ]
    assert len(report.recent) == 4 and report.resets_at == "2026-11-19T00:00:00Z"

    body = report.to_json(show_prompts=False)
    proto = usage_to_proto(report)
    assert body["requests"] == proto.requests == 4
    assert body["requests_by_tier"] == dict(proto.requests_by_tier)
    assert body["escalations_by_reason"] == dict(proto.escalations_by_reason)
    assert body["saved_usd"] == proto.saved_usd and body["cost_usd"] == proto.cost_usd
    assert body["latency_ms"]["p90"] == proto.latency.p90_ms == 400.0
    assert [p["tokens_used"] for p in body["providers"]] == [p.tokens_used for p in proto.providers]
    assert all("prompt" not in row for row in body["recent"])
    assert "prompt" in report.to_json(show_prompts=True)["recent"][0]


async def test_the_recording_router_sees_answers_and_failures() -> None:
    answers: list[tuple[str, Tier]] = []
    failures: list[str] = []

    class Failing(FakeRouter):
        async def generate(self, request: Request) -> Result:
            raise ResourceExhausted("budgets spent")

    ok = RecordingRouter(FakeRouter(), on_answer=[lambda q, r: answers.append((q.request_id, r.tier))])
    await ok.generate(REQUEST)
    events = [e async for e in ok.stream(replace(REQUEST, request_id="s1"))]
    assert answers == [("r1", Tier.REMOTE), ("s1", Tier.REMOTE)] and len(events) == 3
    bad = RecordingRouter(Failing(), on_failure=[lambda q, e, s: failures.append(e.status.value)])
    with pytest.raises(ResourceExhausted):
        await bad.generate(REQUEST)
    assert failures == ["RESOURCE_EXHAUSTED"]


async def test_a_full_queue_drops_records_instead_of_blocking(store: SqliteUsageStore) -> None:
    rec = UsageRecorder(store, Tasks(), PRICES, retention_s=60, max_queue=2)
    for _ in range(5):
        rec.record(REQUEST, result(Tier.LOCAL, "x"))
    assert rec.dropped == 3


async def test_retention_purges_old_records(store: SqliteUsageStore) -> None:
    old = UsageRecord(
        NOW.timestamp() - 10 * 86_400, "old", "", "", "local", "x", "m", "", 1, 1, 1.0, None, "none", 0.0, 0.0
    )
    await store.add([old])
    rec = recorder(store)
    rec.start()
    rec.record(REQUEST, result(Tier.LOCAL, "x"))
    await rec.aclose()
    assert [r.request_id for r in await store.recent(10)] == ["r1"]


async def test_the_live_accuracy_reads_the_same_in_the_report_getusage_and_the_cli(store: SqliteUsageStore) -> None:
    live = (
        LiveAccuracy("trend", 0.72, 40, 30, *bounds(30, 40), target=0.95),
        LiveAccuracy("sentiment", 0.8, 0, 0, *bounds(0, 0), target=0.95),
    )

    async def accuracy() -> tuple[LiveAccuracy, ...]:
        return live

    report = await UsageReporter(MemoryLedger(), store, {}, accuracy=accuracy, wall=lambda: NOW).report()
    body = report.to_json(show_prompts=False)["local_accuracy"]
    proto = usage_to_proto(report).local_accuracy
    assert [(a["task"], a["audited"], a["agreed"]) for a in body] == [(a.task, a.audited, a.agreed) for a in proto]
    assert body[0]["estimate"] == proto[0].estimate == 0.75 and body[1]["estimate"] is None
    assert body[0]["low"] == pytest.approx(proto[0].low) and proto[0].high < 0.95
    text = format_usage(usage_to_proto(report))
    assert "trend                40       30     0.750" in text and "below target" in text
    assert "sentiment             0        0         -" in text
