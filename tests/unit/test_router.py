"""The local-first loop with scripted backends: every escalation path and what the result reports."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from gateway.config import RoutingConfig, RuleConfig, TaskConfig
from gateway.core.contracts import (
    Attempt,
    BackendCall,
    Completion,
    Delta,
    Escalation,
    LocalLoad,
    Message,
    Privacy,
    Request,
    Result,
    Role,
    StreamEvent,
    Tier,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import CapacityExceeded, DeadlineExceeded, InvalidArgument, ResourceExhausted, Unavailable
from gateway.routing.aliases import Aliases
from gateway.routing.recording_router import RecordingRouter
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks


@dataclass
class ScriptedLocal:
    prob: float = 0.9
    error: Exception | None = None
    load_value: LocalLoad = field(default_factory=lambda: LocalLoad(0, 8, 0.0))
    calls: list[BackendCall] = field(default_factory=list)
    name: str = "scripted"
    model: str = "tiny"
    context_length: int = 100

    def load(self) -> LocalLoad:
        return self.load_value

    async def generate(self, call: BackendCall) -> Completion:
        self.calls.append(call)
        if self.error:
            raise self.error
        tokens = (TokenLogprob("up", math.log(self.prob), {"down": math.log(1 - self.prob)}),)
        return Completion("up", self.name, self.model, Usage(5, 1), "stop", tokens)

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        yield Delta("up")
        yield await self.generate(call)

    async def aclose(self) -> None:
        return None


@dataclass(frozen=True)
class RemoteAnswer:
    completion: Completion
    attempts: tuple[Attempt, ...]


@dataclass
class ScriptedRemote:
    error: Exception | None = None
    orders: list[tuple[str, ...]] = field(default_factory=list)

    def providers(self) -> tuple[str, ...]:
        return ("openai", "anthropic")

    def models(self) -> list[object]:
        return []

    async def complete(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> RemoteAnswer:
        self.orders.append(order)
        if self.error:
            raise self.error
        completion = Completion("down", order[0], "big", Usage(9, 1), "stop")
        return RemoteAnswer(completion, (Attempt(order[0], "big", "ok", 1.0),))

    async def stream(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> AsyncIterator[Delta | RemoteAnswer]:
        yield Delta("do")
        yield Delta("wn")
        yield await self.complete(call, order=order, deadline=deadline, urgent=urgent)


TASKS = ConfigTasks({})


def router(local: ScriptedLocal, remote: ScriptedRemote | None = None, **routing: object) -> Router:
    tasks = ChainedTasks(ConfigTasks({"trend": TaskConfig(labels=("up", "down"), min_confidence=0.7)}))
    return Router(local, tasks, RoutingConfig(**routing), remote=remote)  # type: ignore[arg-type]


def recorded(inner: Router) -> tuple[RecordingRouter, list[Result]]:
    """The router as production serves it: wrapped in the recorder that feeds usage, metrics and logs."""
    seen: list[Result] = []
    return RecordingRouter(inner, on_answer=[lambda _request, result: seen.append(result)]), seen


def req(**fields: object) -> Request:
    return Request("r1", (Message(Role.USER, "trend?"),), 4, **fields)  # type: ignore[arg-type]


async def test_confident_local_answer_stays_local() -> None:
    r, seen = recorded(router(ScriptedLocal(prob=0.9), ScriptedRemote()))
    result = await r.generate(req(task="trend"))
    assert (result.tier, result.provider, result.escalation) == (Tier.LOCAL, "scripted", Escalation.NONE)
    assert result.confidence == pytest.approx(0.9)
    assert seen == [result]


async def test_low_confidence_escalates_and_keeps_the_local_confidence() -> None:
    remote = ScriptedRemote()
    r = router(ScriptedLocal(prob=0.6), remote)
    result = await r.generate(req(task="trend"))
    assert (result.tier, result.provider, result.text) == (
        Tier.REMOTE,
        "anthropic",
        "down",
    )  # escalation_order starts with anthropic
    assert result.escalation is Escalation.LOW_CONFIDENCE
    assert result.confidence == pytest.approx(0.6)
    assert [a.outcome for a in result.attempts] == ["low_confidence", "ok"]


async def test_local_only_never_calls_remote_and_returns_the_local_answer() -> None:
    remote = ScriptedRemote()
    r = router(ScriptedLocal(prob=0.6), remote)
    result = await r.generate(req(task="trend", privacy=Privacy.LOCAL_ONLY))
    assert result.tier is Tier.LOCAL and result.escalation is Escalation.NONE and remote.orders == []


async def test_remote_exhausted_falls_back_to_the_local_answer() -> None:
    r = router(ScriptedLocal(prob=0.6), ScriptedRemote(error=ResourceExhausted("all budgets spent")))
    result = await r.generate(req(task="trend"))
    assert result.tier is Tier.LOCAL and result.escalation is Escalation.LOW_CONFIDENCE


async def test_remote_deadline_falls_back_to_the_local_answer_keeping_remote_attempts() -> None:
    error = DeadlineExceeded("deadline reached")
    error.attempts = (Attempt("anthropic", "big", "timeout", 50.0, "timed out"),)  # type: ignore[attr-defined]
    r = router(ScriptedLocal(prob=0.6), ScriptedRemote(error=error))
    result = await r.generate(req(task="trend"))
    assert result.tier is Tier.LOCAL and result.text == "up"
    assert [(a.provider, a.outcome) for a in result.attempts] == [
        ("scripted", "low_confidence"),
        ("anthropic", "timeout"),
    ]


async def test_stream_goes_remote_before_the_first_token_when_local_is_full() -> None:
    r = router(ScriptedLocal(load_value=LocalLoad(8, 8, 0.0)), ScriptedRemote())
    events = [e async for e in r.stream(req())]
    assert [e.text for e in events if isinstance(e, Delta)] == ["do", "wn"]
    final = events[-1]
    assert isinstance(final, Result)
    assert (final.tier, final.escalation, final.text) == (Tier.REMOTE, Escalation.LOCAL_CAPACITY, "down")
    assert [a.outcome for a in final.attempts] == ["skipped", "ok"]


async def test_local_capacity_escalates_without_calling_local() -> None:
    local = ScriptedLocal(load_value=LocalLoad(8, 8, 0.0))
    r = router(local, ScriptedRemote())
    result = await r.generate(req())
    assert result.escalation is Escalation.LOCAL_CAPACITY and result.tier is Tier.REMOTE and local.calls == []
    assert result.attempts[0].outcome == "skipped"


async def test_local_capacity_without_remote_is_resource_exhausted() -> None:
    r = router(ScriptedLocal(error=CapacityExceeded("full")))
    with pytest.raises(ResourceExhausted, match="no capacity"):
        await r.generate(req())


async def test_local_error_escalates_or_is_unavailable() -> None:
    r = router(ScriptedLocal(error=RuntimeError("boom")), ScriptedRemote())
    result = await r.generate(req())
    assert result.escalation is Escalation.LOCAL_ERROR and result.tier is Tier.REMOTE
    assert "RuntimeError: boom" in result.attempts[0].error
    alone = router(ScriptedLocal(error=RuntimeError("boom")))
    with pytest.raises(Unavailable):
        await alone.generate(req())


async def test_rule_escalation_and_preferred_provider() -> None:
    local = ScriptedLocal()
    remote = ScriptedRemote()
    r = router(local, remote, rules=(RuleConfig(match_task="trend", prefer=("anthropic",), escalate=True),))
    result = await r.generate(req(task="trend"))
    assert result.escalation is Escalation.RULE and local.calls == []
    assert remote.orders == [("anthropic", "openai")]


async def test_pinned_provider_and_unknown_names() -> None:
    remote = ScriptedRemote()
    r = router(ScriptedLocal(), remote)
    result = await r.generate(req(model="anthropic/claude"))
    assert result.tier is Tier.REMOTE and result.escalation is Escalation.NONE and remote.orders == [("anthropic",)]
    with pytest.raises(InvalidArgument, match="provider 'xai' is not enabled"):
        await r.generate(req(model="xai/grok"))
    with pytest.raises(InvalidArgument, match="local-only"):
        await r.generate(req(model="openai/x", privacy=Privacy.LOCAL_ONLY))
    with pytest.raises(InvalidArgument, match="known tasks: trend"):
        await r.generate(req(task="nope"))
    with pytest.raises(InvalidArgument, match="unknown model 'nope'; known: tiny"):
        await r.generate(req(model="nope"))
    with pytest.raises(InvalidArgument, match="exceeds the local model's context"):
        await r.generate(Request("r", (Message(Role.USER, "x"),), 101))


async def test_stop_sequences_reach_the_call_and_are_checked_once_here() -> None:
    r = router(ScriptedLocal(), ScriptedRemote())
    assert r.decide(req(stop=("\n", "END"))).call.stop == ("\n", "END")
    with pytest.raises(InvalidArgument, match=r"^stop: 5 stop sequences; send at most 4"):
        r.decide(req(stop=("a", "b", "c", "d", "e")))
    with pytest.raises(InvalidArgument, match=r"^stop: a stop sequence must not be empty"):
        r.decide(req(stop=("a", "")))


async def test_the_result_carries_the_answering_tiers_token_logprobs() -> None:
    r = router(ScriptedLocal(prob=0.9), ScriptedRemote())
    result = await r.generate(req(task="trend", top_logprobs=2))
    assert [t.token for t in result.tokens] == ["up"] and result.tokens[0].top
    escalated = await router(ScriptedLocal(prob=0.6), ScriptedRemote()).generate(req(task="trend"))
    assert escalated.tier is Tier.REMOTE and escalated.tokens == ()  # the scripted provider reports none
    with pytest.raises(InvalidArgument, match=r"^top_logprobs: 21 is out of range; use 0 to 20"):
        r.decide(req(top_logprobs=21))


async def test_aliases_route_local_first_or_pin_and_unknown_names_list_them() -> None:
    """`[models] aliases`: a client's model name means local first, a local pin or a remote pin."""
    local, remote = ScriptedLocal(prob=0.9), ScriptedRemote()
    targets = {"gpt-4o-mini": "", "gpt-4o": "anthropic/claude-big", "small": "tiny"}
    r = Router(
        local,
        ChainedTasks(ConfigTasks({})),
        RoutingConfig(),
        remote=remote,  # type: ignore[arg-type]
        aliases=Aliases(targets),
    )
    first = r.decide(req(model="gpt-4o-mini"))
    assert first.request.model == "" and first.plan.try_local and first.plan.remote_allowed
    assert (await r.generate(req(model="gpt-4o-mini"))).tier is Tier.LOCAL
    pinned = r.decide(req(model="gpt-4o"))
    assert pinned.plan.pinned_remote and pinned.plan.order == ("anthropic",) and pinned.call.model == "claude-big"
    assert (await r.generate(req(model="gpt-4o"))).provider == "anthropic" and remote.orders == [("anthropic",)]
    assert r.decide(req(model="small")).request.model == "tiny" and not r.decide(req(model="small")).plan.pinned_remote
    with pytest.raises(InvalidArgument, match=r"unknown model 'gpt-5'; known: tiny, .*gpt-4o \(alias\)"):
        r.decide(req(model="gpt-5"))
    with pytest.raises(InvalidArgument, match=r"local-only .*'gpt-4o' is an alias of 'anthropic/claude-big'"):
        r.decide(req(model="gpt-4o", privacy=Privacy.LOCAL_ONLY))
    listed = {(m.name, m.tier, m.provider) for m in r.models()}
    assert ("gpt-4o-mini", Tier.LOCAL, "scripted") in listed
    assert ("gpt-4o", Tier.REMOTE, "anthropic") in listed
    assert ("small", Tier.LOCAL, "scripted") in listed


async def test_a_local_only_rule_refuses_a_remote_pin_like_a_local_only_request() -> None:
    """A pin that the rules forbid is the client's mistake: INVALID_ARGUMENT, before any tier runs."""
    local, remote = ScriptedLocal(), ScriptedRemote()
    rules = (RuleConfig(match_tag={"desk": "private"}, local_only=True),)
    r = router(local, remote, rules=rules)
    by_rule = req(model="openai/gpt-4o-mini", tags={"desk": "private"})
    by_privacy = req(model="openai/gpt-4o-mini", privacy=Privacy.LOCAL_ONLY)
    for request in (by_rule, by_privacy):
        with pytest.raises(
            InvalidArgument, match=r"model: 'openai/gpt-4o-mini' is remote but the request is local-only"
        ):
            await r.generate(request)
        with pytest.raises(InvalidArgument, match="is remote but the request is local-only"):
            [e async for e in r.stream(request)]
    assert local.calls == [] and remote.orders == []


async def test_task_system_prompt_and_labels_reach_the_backend() -> None:
    from gateway.config import TaskConfig

    local = ScriptedLocal()
    tasks = ConfigTasks({"trend": TaskConfig(labels=("up", "down"), system_prompt="Answer up or down.")})
    r = Router(local, ChainedTasks(tasks), RoutingConfig())
    await r.generate(req(task="trend"))
    call = local.calls[0]
    assert call.labels == ("up", "down")
    assert call.messages[0] == Message(Role.SYSTEM, "Answer up or down.")


async def test_stream_yields_deltas_then_one_result() -> None:
    r, seen = recorded(router(ScriptedLocal(prob=0.9)))
    events = [e async for e in r.stream(req(task="trend"))]
    assert [type(e).__name__ for e in events] == ["Delta", "Result"]
    assert seen == [events[-1]]
