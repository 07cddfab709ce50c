"""Provider prompt caching: each provider's cached-token counts, read through its official SDK from a stand-in
that reports them in that provider's wire format, and priced and budgeted apart."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.core.contracts import (
    Backend,
    BackendCall,
    Completion,
    Escalation,
    Message,
    Request,
    Result,
    Role,
    Tier,
    Usage,
)
from gateway.observe.pricing import CACHE_RATIOS, Price, PriceTable, cache_ratios
from gateway.observe.usage_recorder import UsageRecorder
from gateway.remote.providers.registry import build_provider
from gateway.remote.types import ProviderSlot
from gateway.routing.tasks import ConfigTasks
from gateway.state.usage.sqlite import SqliteUsageStore
from tests.fakes.base import FakeProviderServer
from tests.fakes.providers import KINDS, TEST_KEYS, provider_config

LONG_SYSTEM = "You are a trading desk assistant. " * 40  # 240 words: a long stable prefix


def _call(question: str) -> BackendCall:
    return BackendCall("r", (Message(Role.SYSTEM, LONG_SYSTEM), Message(Role.USER, question)), max_tokens=16)


@asynccontextmanager
async def _provider(kind: str, **overrides: object) -> AsyncIterator[tuple[FakeProviderServer, Backend]]:
    fake = KINDS[kind].fake()
    fake.prompt_cache_min = 100
    await fake.start()
    provider = build_provider(kind, provider_config(kind, fake, **overrides), TEST_KEYS[KINDS[kind].key_env])
    try:
        yield fake, provider
    finally:
        await provider.aclose()
        await fake.stop()


async def _final(provider: Backend, call: BackendCall) -> Completion:
    events = [event async for event in provider.stream(call)]
    assert isinstance(events[-1], Completion)
    return events[-1]


@pytest.mark.parametrize("kind", ["openai", "xai", "google"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_implicit_cache_reads_come_from_each_providers_usage(kind: str, streamed: bool) -> None:
    async with _provider(kind) as (fake, provider):
        first = await provider.generate(_call("is BTC above 60k?"))
        second = await (_final(provider, _call("is ETH below 3k?")) if streamed else provider.generate(_call("x")))
        assert first.usage.cached_prompt_tokens == 0
        # the system prompt's words, and its message overhead, were shared with the first prompt
        assert second.usage.cached_prompt_tokens >= 240
        assert second.usage.cached_prompt_tokens < second.usage.prompt_tokens
        assert second.usage.prompt_tokens == fake.last_usage[0]  # cached tokens stay counted in the prompt
        assert second.usage.cache_write_tokens == 0


@pytest.mark.parametrize("streamed", [False, True])
async def test_anthropic_marks_a_long_system_prompt_and_reports_writes_then_reads(streamed: bool) -> None:
    async with _provider("anthropic", prompt_cache=True, prompt_cache_min_chars=1000) as (fake, provider):
        calls = [_call("is BTC above 60k?"), _call("is ETH below 3k?")]
        first, second = [await (_final(provider, c) if streamed else provider.generate(c)) for c in calls]
        system = fake.seen[0].body["system"]
        assert system == [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
        prefix = 240 + 3
        assert (first.usage.cache_write_tokens, first.usage.cached_prompt_tokens) == (prefix, 0)
        assert (second.usage.cache_write_tokens, second.usage.cached_prompt_tokens) == (0, prefix)
        assert second.usage.prompt_tokens == fake.last_usage[0]  # input + cache reads + cache writes


async def test_anthropic_leaves_short_or_unconfigured_system_prompts_alone() -> None:
    async with _provider("anthropic") as (fake, provider):  # prompt_cache off (the default)
        await provider.generate(_call("q"))
        assert fake.seen[0].body["system"] == LONG_SYSTEM
    async with _provider("anthropic", prompt_cache=True, prompt_cache_min_chars=10_000) as (fake, provider):
        completion = await provider.generate(_call("q"))
        assert fake.seen[0].body["system"] == LONG_SYSTEM
        assert completion.usage.cache_write_tokens == 0


def test_cached_and_written_tokens_are_priced_at_their_own_rates() -> None:
    anthropic = Price(3.0, 15.0, *cache_ratios("anthropic"))
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=0, cached_prompt_tokens=600_000, cache_write_tokens=0)
    assert anthropic.cost(usage) == pytest.approx(0.4 * 3.0 + 0.6 * 0.3)
    written = Usage(1_000_000, 0, 0, 1_000_000)
    assert anthropic.cost(written) == pytest.approx(3.75)
    openai = Price(0.15, 0.6, *cache_ratios("openai"))
    assert openai.cost(Usage(1_000_000, 1_000_000, 1_000_000)) == pytest.approx(0.075 + 0.6)
    assert cache_ratios("google", read=0.5) == (0.5, CACHE_RATIOS["google"][1])  # config overrides the default
    table = PriceTable({"anthropic": anthropic}, reference="anthropic")
    assert table.spent(Tier.REMOTE, "anthropic", usage) < table.reference_cost(usage)  # reference: uncached


def test_the_budget_counts_cache_reads_at_the_providers_weight() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=10, cached_prompt_tokens=800)
    backend: Backend = object()  # type: ignore[assignment]
    assert ProviderSlot(backend).charge(usage) == 1010
    assert ProviderSlot(backend, budget_cached_weight=0.0).charge(usage) == 210
    assert ProviderSlot(backend, budget_cached_weight=0.25).charge(usage) == 410


def test_a_usage_record_keeps_the_cached_tokens_and_costs_them_at_the_cache_rate(tmp_path: Path) -> None:
    prices = PriceTable({"anthropic": Price(3.0, 15.0, *cache_ratios("anthropic"))}, reference="anthropic")
    recorder = UsageRecorder(SqliteUsageStore(tmp_path / "usage.sqlite3"), ConfigTasks({}), prices, retention_s=60.0)
    usage = Usage(prompt_tokens=1_000, completion_tokens=100, cached_prompt_tokens=800, cache_write_tokens=100)
    request = Request("r", (Message(Role.USER, "q"),), 16)
    result = Result("r", "a", Tier.REMOTE, "anthropic", "claude", None, Escalation.RULE, usage, (), "stop", 1.0)
    record = recorder.make_record(request, result)
    assert (record.cached_prompt_tokens, record.cache_write_tokens) == (800, 100)
    fresh, read, written = 100 * 3.0, 800 * 0.3, 100 * 3.75
    assert record.cost_usd == pytest.approx((fresh + read + written + 100 * 15.0) / 1_000_000)
    assert record.reference_cost_usd == pytest.approx((1_000 * 3.0 + 100 * 15.0) / 1_000_000)


async def test_the_days_cached_tokens_reach_getusage_and_the_cli(tmp_path: Path) -> None:
    from datetime import datetime

    from gateway.api.usage_convert import usage_to_proto
    from gateway.cli import format_usage, usage_json
    from gateway.observe.usage_report import UsageReporter
    from gateway.state.budget.memory import MemoryLedger

    store = SqliteUsageStore(tmp_path / "usage.sqlite3")
    prices = PriceTable({"anthropic": Price(3.0, 15.0, *cache_ratios("anthropic"))}, reference="anthropic")
    recorder = UsageRecorder(store, ConfigTasks({}), prices, retention_s=60.0)
    request = Request("r", (Message(Role.USER, "q"),), 16)
    records = [
        recorder.make_record(
            request,
            Result("r", "a", Tier.REMOTE, "anthropic", "claude", None, Escalation.RULE, usage, (), "stop", 1.0),
        )
        for usage in (
            Usage(prompt_tokens=1_000, completion_tokens=10, cache_write_tokens=900),
            Usage(prompt_tokens=1_000, completion_tokens=10, cached_prompt_tokens=900),
        )
    ]
    await store.add(records)
    day = records[0].day
    reporter = UsageReporter(
        MemoryLedger(), store, {"anthropic": 20_000}, wall=lambda: datetime.fromisoformat(f"{day}T12:00:00+00:00")
    )
    report = await reporter.report(recent=0)
    proto = usage_to_proto(report)
    assert (proto.cached_prompt_tokens, proto.cache_write_tokens) == (900, 900)
    body = report.to_json(show_prompts=False)
    as_cli = usage_json(proto)
    assert (as_cli["cached_prompt_tokens"], as_cli["cache_write_tokens"]) == (900, 900)
    assert (body["cached_prompt_tokens"], body["cache_write_tokens"]) == (900, 900)
    assert "provider prompt caches: 900 prompt tokens read, 900 written" in format_usage(proto)
    await store.aclose()
