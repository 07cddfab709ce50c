"""The remote tier end to end: real SDKs against the stand-ins, a real ledger, a hand-moved clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.clock import SYSTEM_CLOCK, Clock
from gateway.core.contracts import Attempt, BackendCall, Delta, Message, ResponseFormat, Role, Tier
from gateway.remote.continuation import CONTINUE_PROMPT
from gateway.remote.estimate import CharEstimator
from gateway.remote.providers.registry import build_provider
from gateway.remote.tier import RemoteTier
from gateway.remote.types import (
    ProviderSlot,
    RemoteDeadlineExceeded,
    RemoteExhausted,
    RemoteResult,
    RemoteSettings,
    RemoteUnavailable,
)
from gateway.state.breaker.machine import BreakerSettings
from gateway.state.breaker.memory import MemoryBreakerStore
from gateway.state.budget.ledger import Reservation, TokenLedger, utc_day
from gateway.state.budget.memory import MemoryLedger
from gateway.state.budget.sqlite import SqliteLedger
from tests.fakes.base import NO_FAULT, FakeProviderServer, Fault, Reply
from tests.fakes.clock import FakeClock
from tests.fakes.providers import KINDS, TEST_KEYS, provider_config, running
from tests.waiting import wait_until_async

CALL = BackendCall(
    request_id="r1",
    messages=(Message(Role.SYSTEM, "answer in one word"), Message(Role.USER, "is the trend up or down")),
    max_tokens=16,
)
ESTIMATE = CharEstimator()(CALL)
BOTH = ("openai", "anthropic")


@dataclass
class Harness:
    tier: RemoteTier
    fakes: Mapping[str, FakeProviderServer]
    ledger: TokenLedger
    clock: FakeClock | None
    sleeps: list[float] = field(default_factory=list)

    def day(self) -> str:
        return utc_day(self.clock.now if self.clock else SYSTEM_CLOCK.wall())

    async def used(self, provider: str) -> tuple[int, int]:
        spend = (await self.ledger.usage(self.day())).get(provider)
        return (spend.tokens_used, spend.requests) if spend else (0, 0)

    def reported(self, provider: str) -> int:
        return sum(self.fakes[provider].last_usage)


Make = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """make(kinds, limits={name: {...}}, fake_clock=True, breaker=...) -> Harness; everything closed afterwards."""
    opened: list[tuple[RemoteTier, TokenLedger]] = []
    async with running(*KINDS) as fakes:

        async def build(
            kinds: tuple[str, ...] = BOTH,
            limits: Mapping[str, Mapping[str, object]] | None = None,
            fake_clock: bool = True,
            breaker: BreakerSettings | None = None,
            sqlite: bool = False,
            continue_streams: bool = True,
        ) -> Harness:
            clock = FakeClock() if fake_clock else None
            ledger: TokenLedger = SqliteLedger(tmp_path / f"l{len(opened)}.sqlite3") if sqlite else MemoryLedger()
            harness = Harness(None, fakes, ledger, clock)  # type: ignore[arg-type]
            slots = []
            for kind in kinds:
                extra = dict((limits or {}).get(kind, {}))
                slot_fields = {k: extra.pop(k) for k in ("daily_token_budget", "requests_per_minute") if k in extra}
                config = provider_config(kind, fakes[kind], **extra)
                backend = build_provider(kind, config, TEST_KEYS[KINDS[kind].key_env])
                slots.append(ProviderSlot(backend, max_retries=config.max_retries, **slot_fields))  # type: ignore[arg-type]

            async def sleep(seconds: float) -> None:
                harness.sleeps.append(seconds)

            harness.tier = RemoteTier(
                slots,
                ledger,
                settings=RemoteSettings(breaker=breaker or BreakerSettings(), continue_streams=continue_streams),
                clock=clock.clock() if clock else SYSTEM_CLOCK,
                sleep=sleep,
            )
            opened.append((harness.tier, ledger))
            return harness

        yield build
        for tier, ledger in opened:
            await tier.aclose()
            await ledger.aclose()


async def test_first_provider_answers_and_usage_is_reconciled_to_what_it_reported(make: Make) -> None:
    h = await make()
    result = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert result.completion.provider == "openai"
    assert result.completion.text == "The trend is up"
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openai", "ok")]
    assert await h.used("openai") == (h.reported("openai"), 1)
    assert h.reported("openai") != ESTIMATE
    assert h.fakes["anthropic"].requests == 0


async def test_retries_then_fails_over_to_the_next_provider(make: Make) -> None:
    h = await make(limits={"openai": {"max_retries": 2}})
    h.fakes["openai"].always(Fault(status=503))
    result = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert result.completion.provider == "anthropic"
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openai", "error")] * 3 + [("anthropic", "ok")]
    assert "HTTP 503" in result.attempts[0].error
    assert h.fakes["openai"].requests == 3
    assert len(h.sleeps) == 2
    assert await h.used("openai") == (0, 0)  # a 503 spent nothing: reservations released
    assert await h.used("anthropic") == (h.reported("anthropic"), 1)


async def test_retry_waits_as_long_as_retry_after_says(make: Make) -> None:
    h = await make(limits={"openai": {"max_retries": 2}})
    h.fakes["openai"].fail(Fault(status=429, retry_after="2"))
    result = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert result.completion.provider == "openai"
    assert len(h.sleeps) == 1 and h.sleeps[0] >= 2.0
    assert h.fakes["openai"].requests == 2


async def test_retry_after_beyond_the_deadline_falls_back_without_waiting(make: Make) -> None:
    h = await make(limits={"openai": {"max_retries": 2}}, fake_clock=False)
    h.fakes["openai"].fail(Fault(status=429, retry_after="5"))
    result = await h.tier.complete(CALL, order=BOTH, deadline=time.monotonic() + 3.0)
    assert result.completion.provider == "anthropic"
    assert h.sleeps == []
    assert h.fakes["openai"].requests == 1


async def test_a_long_retry_after_blocks_the_provider_for_later_calls(make: Make) -> None:
    h = await make(limits={"openai": {"max_retries": 2}})
    h.fakes["openai"].fail(Fault(status=429, retry_after="120"))
    assert (await h.tier.complete(CALL, order=BOTH, deadline=None)).completion.provider == "anthropic"
    second = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert second.completion.provider == "anthropic"
    assert second.attempts[0].outcome == "skipped" and "Retry-After" in second.attempts[0].error
    assert h.fakes["openai"].requests == 1
    assert h.clock is not None
    h.clock.advance(120)
    assert (await h.tier.complete(CALL, order=BOTH, deadline=None)).completion.provider == "openai"


async def test_budget_exhaustion_names_the_budget_and_resets_at_utc_midnight(make: Make) -> None:
    h = await make(kinds=("openai",), limits={"openai": {"daily_token_budget": ESTIMATE + 10}})
    assert h.clock is not None and h.clock.now.hour == 23
    await h.tier.complete(CALL, order=("openai",), deadline=None)
    used = h.reported("openai")
    with pytest.raises(RemoteExhausted) as info:
        await h.tier.complete(CALL, order=("openai",), deadline=None)
    message = info.value.message
    assert f"openai ({used}/{ESTIMATE + 10} tokens)" in message
    assert "2026-11-26T00:00:00Z" in message
    assert info.value.attempts[0].outcome == "skipped"
    assert h.fakes["openai"].requests == 1
    h.clock.advance(61)  # past UTC midnight: a new budget day
    assert (await h.tier.complete(CALL, order=("openai",), deadline=None)).completion.provider == "openai"
    assert h.fakes["openai"].requests == 2


async def test_a_failure_and_a_spent_budget_is_unavailable_naming_both(make: Make) -> None:
    h = await make(limits={"anthropic": {"daily_token_budget": ESTIMATE - 1}})
    h.fakes["openai"].always(Fault(status=500))
    with pytest.raises(RemoteUnavailable) as info:
        await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert "openai: HTTP 500" in info.value.message
    assert "anthropic" in info.value.message and "out of budget" in info.value.message
    assert h.fakes["anthropic"].requests == 0


async def test_deadline_cuts_the_chain_mid_way(make: Make) -> None:
    h = await make(kinds=("openai", "anthropic", "google"), fake_clock=False)
    h.fakes["openai"].always(Fault(status=503))
    h.fakes["anthropic"].always(Fault(delay_s=5.0))
    with pytest.raises(RemoteDeadlineExceeded) as info:
        await h.tier.complete(CALL, order=("openai", "anthropic", "google"), deadline=time.monotonic() + 1.5)
    outcomes = [(a.provider, a.outcome) for a in info.value.attempts]
    assert outcomes == [("openai", "error"), ("anthropic", "timeout")]
    assert h.fakes["google"].requests == 0
    assert await h.used("anthropic") == (ESTIMATE, 1)  # it may have run: the estimate stays spent


async def test_a_passed_deadline_calls_nobody(make: Make) -> None:
    h = await make(fake_clock=False)
    with pytest.raises(RemoteDeadlineExceeded):
        await h.tier.complete(CALL, order=BOTH, deadline=time.monotonic() - 1)
    assert h.fakes["openai"].requests == h.fakes["anthropic"].requests == 0


async def test_breaker_opens_then_a_half_open_probe_closes_it(make: Make) -> None:
    h = await make(breaker=BreakerSettings(failures=2, window_s=60, cooldown_s=30))
    h.fakes["openai"].always(Fault(status=503))
    for _ in range(2):
        assert (await h.tier.complete(CALL, order=BOTH, deadline=None)).completion.provider == "anthropic"
    third = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert third.attempts[0].outcome == "skipped" and "circuit open" in third.attempts[0].error
    assert h.fakes["openai"].requests == 2
    assert h.clock is not None
    h.clock.advance(30)
    h.fakes["openai"].always(NO_FAULT)
    probe = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert probe.completion.provider == "openai"
    assert (await h.tier.complete(CALL, order=BOTH, deadline=None)).completion.provider == "openai"


async def test_a_dropped_connection_keeps_the_estimate_spent(make: Make) -> None:
    h = await make()
    h.fakes["openai"].fail(Fault(reset_mid_body=True))
    result = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert result.completion.provider == "anthropic"
    assert await h.used("openai") == (ESTIMATE, 1)


async def test_requests_per_minute_skips_to_the_next_provider(make: Make) -> None:
    h = await make(limits={"openai": {"requests_per_minute": 1}})
    assert (await h.tier.complete(CALL, order=BOTH, deadline=None)).completion.provider == "openai"
    second = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert second.completion.provider == "anthropic"
    assert "rate limited: 1 requests/min" in second.attempts[0].error
    assert await h.used("openai") == (h.reported("openai"), 1)  # the skipped request reserved nothing
    with pytest.raises(RemoteExhausted, match="rate limited"):
        await h.tier.complete(CALL, order=("openai",), deadline=None)
    assert h.fakes["openai"].requests == 1


async def test_pinned_model_reaches_the_provider(make: Make) -> None:
    h = await make()
    pinned = BackendCall(CALL.request_id, CALL.messages, CALL.max_tokens, model="claude-pinned")
    result = await h.tier.complete(pinned, order=("anthropic",), deadline=None)
    assert h.fakes["anthropic"].seen[0].body["model"] == "claude-pinned"
    assert result.completion.model == "claude-pinned"
    assert h.fakes["openai"].requests == 0


async def test_urgent_picks_the_fastest_healthy_provider(make: Make) -> None:
    h = await make(fake_clock=False)
    h.fakes["openai"].always(Fault(delay_s=0.3))
    for name in BOTH:
        await h.tier.complete(CALL, order=(name,), deadline=None)
    urgent = await h.tier.complete(CALL, order=BOTH, deadline=None, urgent=True)
    assert urgent.completion.provider == "anthropic"
    normal = await h.tier.complete(CALL, order=BOTH, deadline=None)
    assert normal.completion.provider == "openai"


async def test_unknown_provider_in_order_is_reported(make: Make) -> None:
    h = await make()
    with pytest.raises(RemoteUnavailable, match="mistral: not configured"):
        await h.tier.complete(CALL, order=("mistral",), deadline=None)


async def test_500_concurrent_requests_never_record_more_than_the_budget(make: Make) -> None:
    budget = 40 * ESTIMATE
    h = await make(kinds=("openai",), limits={"openai": {"daily_token_budget": budget}}, sqlite=True)
    outcomes = await asyncio.gather(
        *(h.tier.complete(CALL, order=("openai",), deadline=None) for _ in range(500)), return_exceptions=True
    )
    served = [o for o in outcomes if isinstance(o, RemoteResult)]
    refused = [o for o in outcomes if isinstance(o, RemoteExhausted)]
    assert len(served) + len(refused) == 500
    tokens, requests = await h.used("openai")
    assert tokens <= budget
    assert requests == len(served) == h.fakes["openai"].requests
    assert len(served) >= 40
    assert tokens == len(served) * h.reported("openai")


async def test_caller_cancelling_keeps_the_estimate_and_frees_the_provider(make: Make) -> None:
    h = await make(fake_clock=False)
    h.fakes["openai"].fail(Fault(delay_s=5.0))
    task = asyncio.create_task(h.tier.complete(CALL, order=BOTH, deadline=None))
    await wait_until_async(lambda: h.fakes["openai"].requests, timeout_s=30, what="the call to reach the provider")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await h.used("openai") == (ESTIMATE, 1)
    assert (await h.tier.complete(CALL, order=BOTH, deadline=None)).completion.provider == "openai"


class GatedLedger(MemoryLedger):
    """A ledger whose reserve has reserved but not yet returned until `gate` opens (a slow shared store)."""

    def __init__(self) -> None:
        super().__init__()
        self.reserved = asyncio.Event()
        self.gate = asyncio.Event()

    async def reserve(self, provider: str, tokens: int, *, day: str, limit: int | None) -> Reservation | None:
        reservation = await super().reserve(provider, tokens, day=day, limit=limit)
        self.reserved.set()
        await self.gate.wait()
        return reservation


async def test_caller_cancelling_while_the_ledger_reserves_leaves_nothing_reserved(make: Make) -> None:
    """A hedge that loses before its request leaves: the reservation made as it was cancelled is given back."""
    h = await make(fake_clock=False)
    ledger = GatedLedger()
    backend = build_provider("openai", provider_config("openai", h.fakes["openai"]), TEST_KEYS["OPENAI_API_KEY"])
    tier = RemoteTier([ProviderSlot(backend)], ledger)
    seen: list[Attempt] = []
    task = asyncio.create_task(tier.complete(CALL, order=("openai",), deadline=None, attempts=seen))
    await asyncio.wait_for(ledger.reserved.wait(), 30)
    task.cancel()
    ledger.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await tier.aclose()
    assert await ledger.usage(utc_day(SYSTEM_CLOCK.wall())) == {}
    assert await ledger.settle_expired(datetime.now(UTC) + timedelta(days=1)) == 0  # none left open
    assert h.fakes["openai"].requests == 0 and seen == []


async def test_attempts_list_keeps_a_cancelled_call_s_tries(make: Make) -> None:
    h = await make(fake_clock=False)
    h.fakes["openai"].fail(Fault(delay_s=5.0))
    seen: list[Attempt] = []
    task = asyncio.create_task(h.tier.complete(CALL, order=BOTH, deadline=None, attempts=seen))
    await wait_until_async(lambda: h.fakes["openai"].requests, timeout_s=30, what="the call to reach the provider")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [(a.provider, a.outcome) for a in seen] == [("openai", "cancelled")]
    assert await h.used("openai") == (ESTIMATE, 1)  # it was with the provider: kept at its estimate
    again: list[Attempt] = []
    result = await h.tier.complete(CALL, order=BOTH, deadline=None, attempts=again)
    assert [(a.provider, a.outcome) for a in again] == [("openai", "ok")] and result.attempts == tuple(again)


async def test_stream_yields_deltas_then_the_result(make: Make) -> None:
    h = await make()
    h.fakes["openai"].fail(Fault(status=503))
    events = [e async for e in h.tier.stream(CALL, order=BOTH, deadline=None)]
    final = events[-1]
    assert isinstance(final, RemoteResult)
    assert "".join(e.text for e in events[:-1] if isinstance(e, Delta)) == final.completion.text == "The trend is up"
    assert [(a.provider, a.outcome) for a in final.attempts] == [("openai", "error"), ("anthropic", "ok")]
    assert await h.used("anthropic") == (h.reported("anthropic"), 1)


async def test_stream_broken_after_text_is_continued_by_the_next_provider_with_a_continuation_prompt(
    make: Make,
) -> None:
    h = await make(kinds=("anthropic", "openai"))
    h.fakes["anthropic"].fail(Fault(reset_after_frames=5))  # message_start, block start, ping, "The ", "trend "
    h.fakes["openai"].reply = Reply("is up")
    events = [e async for e in h.tier.stream(CALL, order=("anthropic", "openai"), deadline=None)]
    final = events[-1]
    assert isinstance(final, RemoteResult)
    pieces = [e.text for e in events[:-1] if isinstance(e, Delta)]
    assert pieces == ["The ", "trend ", "is up"]  # the continuation's start is held back to check for repeats
    assert final.completion.text == "The trend is up" and final.completion.provider == "openai"
    assert [(a.provider, a.outcome) for a in final.attempts] == [("anthropic", "error"), ("openai", "ok")]
    # OpenAI has no prefill: the text so far as its assistant turn, then a user turn asking for the rest
    messages = h.fakes["openai"].seen[-1].body["messages"]
    assert messages[-2] == {"role": "assistant", "content": "The trend "}
    assert messages[-1] == {"role": "user", "content": CONTINUE_PROMPT}
    assert h.fakes["openai"].seen[-1].body["max_completion_tokens"] == CALL.max_tokens - 2
    # both tries are charged: the broken one at its estimate, the continuation at what it reported
    assert (await h.used("anthropic"))[0] == ESTIMATE
    assert (await h.used("openai"))[0] == h.reported("openai")
    assert final.completion.usage.completion_tokens == h.fakes["openai"].last_usage[1] + 2


async def test_a_continuation_that_repeats_the_words_it_was_shown_does_not_send_them_twice(make: Make) -> None:
    h = await make(kinds=("anthropic", "openai"))
    h.fakes["anthropic"].fail(Fault(reset_after_frames=5))  # "The ", "trend " went out
    h.fakes["openai"].reply = Reply("The trend is up, with volume rising into the close.")
    events = [e async for e in h.tier.stream(CALL, order=("anthropic", "openai"), deadline=None)]
    final = events[-1]
    assert isinstance(final, RemoteResult)
    text = "".join(e.text for e in events[:-1] if isinstance(e, Delta))
    assert text == final.completion.text == "The trend is up, with volume rising into the close."


async def test_stream_broken_after_text_with_nobody_left_ends_with_unavailable(make: Make) -> None:
    h = await make(kinds=("openai",))
    h.fakes["openai"].fail(Fault(reset_after_frames=2))
    received: list[object] = []
    with pytest.raises(RemoteUnavailable, match="no other provider could continue"):
        async for event in h.tier.stream(CALL, order=("openai",), deadline=None):
            received.append(event)
    assert [e.text for e in received if isinstance(e, Delta)] == ["The "]


async def test_stream_failing_after_text_was_sent_does_not_fall_back_when_continuing_is_off(make: Make) -> None:
    h = await make(continue_streams=False)
    h.fakes["openai"].fail(Fault(reset_mid_body=True))
    received: list[object] = []
    with pytest.raises(RemoteUnavailable, match="mid-stream"):
        async for event in h.tier.stream(CALL, order=BOTH, deadline=None):
            received.append(event)
    assert received and all(isinstance(e, Delta) for e in received)
    assert h.fakes["anthropic"].requests == 0
    assert await h.used("openai") == (ESTIMATE, 1)


async def test_a_structured_stream_broken_after_text_is_not_continued(make: Make) -> None:
    h = await make()
    h.fakes["openai"].reply = Reply('{"trend": "up", "strength": "strong"}')
    h.fakes["openai"].fail(Fault(reset_after_frames=2))
    call = replace(CALL, response_format=ResponseFormat())
    with pytest.raises(RemoteUnavailable, match="failed mid-stream after sending text"):
        async for _ in h.tier.stream(call, order=BOTH, deadline=None):
            pass
    assert h.fakes["anthropic"].requests == 0  # a second provider's JSON cannot be spliced onto the first's


async def test_a_call_whose_task_compacts_reaches_the_provider_compacted_with_its_prefix_unchanged(make: Make) -> None:
    h = await make(kinds=("openai",))
    system = "answer  in one word\n\n\n"
    call = BackendCall(
        "r", (Message(Role.SYSTEM, system), Message(Role.USER, "is   BTC above $60,000?  ")), 8, compact_prompt=True
    )
    await h.tier.complete(call, order=("openai",), deadline=None)
    events = [e async for e in h.tier.stream(call, order=("openai",), deadline=None)]
    assert isinstance(events[-1], RemoteResult)
    for seen in h.fakes["openai"].seen:
        assert seen.body["messages"] == [
            {"role": "system", "content": system},
            {"role": "user", "content": "is BTC above $60000?"},
        ]
    await h.tier.complete(replace(call, compact_prompt=False), order=("openai",), deadline=None)
    assert h.fakes["openai"].seen[-1].body["messages"][-1]["content"] == "is   BTC above $60,000?  "


async def test_usage_today_and_models(make: Make) -> None:
    h = await make(limits={"openai": {"daily_token_budget": 15000}})
    await h.tier.complete(CALL, order=BOTH, deadline=None)
    rows = {row.provider: row for row in await h.tier.usage_today()}
    used = h.reported("openai")
    assert (rows["openai"].tokens_used, rows["openai"].token_budget, rows["openai"].remaining) == (
        used,
        15000,
        15000 - used,
    )
    assert rows["openai"].requests == 1
    assert (rows["anthropic"].tokens_used, rows["anthropic"].token_budget, rows["anthropic"].remaining) == (0, 0, None)
    assert rows["openai"].resets_at.isoformat() == "2026-11-26T00:00:00+00:00"
    models = {m.name: m for m in h.tier.models()}
    assert set(models) == {"openai/gpt-test", "anthropic/claude-test"}
    assert models["openai/gpt-test"].tier is Tier.REMOTE
    assert h.tier.providers() == BOTH


async def test_breaker_state_can_be_shared_between_tiers(make: Make) -> None:
    """Two tiers on one breaker store stand in for two processes on a shared (SQLite/Redis) store."""
    first = await make(breaker=BreakerSettings(failures=1, window_s=60, cooldown_s=30))
    assert first.clock is not None
    shared = MemoryBreakerStore(
        BreakerSettings(failures=1, window_s=60, cooldown_s=30), wall=first.clock.clock().monotonic
    )
    slots = [
        ProviderSlot(build_provider(k, provider_config(k, first.fakes[k]), TEST_KEYS[KINDS[k].key_env])) for k in BOTH
    ]
    one = RemoteTier(slots[:1], MemoryLedger(), breakers=shared, clock=first.clock.clock())
    two = RemoteTier(slots, MemoryLedger(), breakers=shared, clock=first.clock.clock())
    try:
        first.fakes["openai"].always(Fault(status=503))
        with pytest.raises(RemoteUnavailable):
            await one.complete(CALL, order=("openai",), deadline=None)
        result = await two.complete(CALL, order=BOTH, deadline=None)
        assert result.attempts[0].outcome == "skipped" and "circuit open" in result.attempts[0].error
        assert first.fakes["openai"].requests == 1
    finally:
        await two.aclose()


def test_clock_is_injectable() -> None:
    clock = FakeClock()
    assert Clock(wall=lambda: clock.now).wall() == clock.now
