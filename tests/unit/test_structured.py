"""Structured (JSON) answers: the schema checked once in routing, answers validated on every tier, escalation
from a backend that cannot constrain or answers invalid JSON, failover past a provider whose answer does not
validate, and the confidence of an enum field's choice."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.core import structured
from gateway.core.contracts import (
    BackendCall,
    Completion,
    Delta,
    Escalation,
    LocalLoad,
    Message,
    Privacy,
    Request,
    ResponseFormat,
    Result,
    Role,
    StreamEvent,
    Tier,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import InvalidArgument, Unavailable
from tests.unit.test_remote_tier import CALL, Make, make  # noqa: F401 - the remote tier's fixture
from tests.unit.test_router import ScriptedRemote, router

TRADE_SCHEMA = {
    "type": "object",
    "properties": {
        "signal": {"type": "string", "enum": ["buy", "sell", "hold"]},
        "size": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string"},
    },
    "required": ["signal", "size", "reason"],
}
TRADE = ResponseFormat(structured.canonical(TRADE_SCHEMA), "trade", strict=True)
GOOD = '{"signal": "sell", "size": 0.2, "reason": "momentum fades"}'


def _tokens(text: str, sell: float = 0.6, buy: float = 0.3, hold: float = 0.1) -> tuple[TokenLogprob, ...]:
    """The answer as tokens, each sure (logprob 0) but the one that starts the signal's value."""
    at = text.index('"sell"') + 1
    pieces = [text[:at], text[at : at + 4], text[at + 4 :]]
    top = {"sell": math.log(sell), "buy": math.log(buy), "hold": math.log(hold), "maybe": math.log(0.001)}
    return (TokenLogprob(pieces[0], 0.0), TokenLogprob(pieces[1], math.log(sell), top), TokenLogprob(pieces[2], 0.0))


@dataclass
class JsonLocal:
    """A local backend answering `text`; constrains_json says whether it can constrain its decoding."""

    text: str = GOOD
    constrains_json: bool = True
    tokens: Callable[[str], tuple[TokenLogprob, ...]] = _tokens
    calls: list[BackendCall] = field(default_factory=list)
    name: str = "scripted"
    model: str = "tiny"
    context_length: int = 200

    def load(self) -> LocalLoad:
        return LocalLoad(0, 8, 0.0)

    async def generate(self, call: BackendCall) -> Completion:
        self.calls.append(call)
        tokens = self.tokens(self.text) if '"sell"' in self.text else ()
        return Completion(self.text, self.name, self.model, Usage(5, 9), "stop", tokens)

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        yield Delta(self.text[:3])  # a structured request never streams from here: the router asks generate()
        yield await self.generate(call)

    async def aclose(self) -> None:
        return None


def req(fmt: ResponseFormat | None = TRADE, **fields: Any) -> Request:
    return Request("r1", (Message(Role.USER, "BTC fell 3%: signal?"),), 64, response_format=fmt, **fields)


# -- the schema, the answer, the enum's confidence --------------------------------------------------------


def test_the_answer_is_checked_against_the_schema() -> None:
    assert structured.problem(GOOD, TRADE) is None
    assert "not JSON" in (structured.problem('{"signal": "sell"', TRADE) or "")
    wrong = structured.problem('{"signal": "short", "size": 0.2, "reason": "x"}', TRADE) or ""
    assert "'short' is not one of ['buy', 'sell', 'hold'] (at signal)" in wrong
    assert "0.2" not in (structured.problem('{"signal": "buy", "size": 2, "reason": "x"}', TRADE) or "0.2")
    assert structured.problem("[1, 2]", ResponseFormat()) == "the answer is not a JSON object"
    assert structured.problem('{"any": 1}', ResponseFormat()) is None


def test_an_invalid_schema_is_refused_naming_the_parameter() -> None:
    bad = ResponseFormat(structured.canonical({"type": "objekt"}))
    with pytest.raises(InvalidArgument, match=r"^response_format: not a valid JSON schema: 'objekt' is not valid"):
        structured.check(bad)
    structured.check(TRADE)
    structured.check(ResponseFormat())


def test_an_enum_choice_is_renormalised_over_the_allowed_values() -> None:
    assert structured.enum_confidence(GOOD, _tokens(GOOD), TRADE) == pytest.approx(0.6 / (0.6 + 0.3 + 0.1))
    assert structured.enum_confidence(GOOD, _tokens(GOOD, 0.3, 0.3, 0.3), TRADE) == pytest.approx(1 / 3)
    assert structured.enum_confidence(GOOD, (), TRADE) is None  # no alternatives reported: no enum confidence
    unreported = tuple(
        TokenLogprob(t.token, t.logprob, {k: v for k, v in t.top.items() if k != "hold"}) for t in _tokens(GOOD)
    )  # a value not among the alternatives counts as likely as the least likely one reported (0.001)
    assert structured.enum_confidence(GOOD, unreported, TRADE) == pytest.approx(0.6 / (0.6 + 0.3 + 0.001))
    assert structured.enum_confidence(GOOD, _tokens(GOOD), ResponseFormat()) is None


# -- routing -------------------------------------------------------------------------------------------------


async def test_a_constrained_local_answer_stays_local_with_its_enum_confidence() -> None:
    local = JsonLocal()
    r = router(local, ScriptedRemote())  # type: ignore[arg-type]
    result = await r.generate(req(min_confidence=0.5))
    assert (result.tier, result.text, result.escalation) == (Tier.LOCAL, GOOD, Escalation.NONE)
    assert local.calls[0].response_format == TRADE
    assert result.confidence == pytest.approx(0.6)  # the signal's choice, below the tokens' quantile


async def test_an_unsure_enum_choice_escalates_as_low_confidence() -> None:
    local = JsonLocal(tokens=lambda text: _tokens(text, 0.4, 0.35, 0.25))
    result = await router(local, ScriptedRemote()).generate(req(min_confidence=0.5))  # type: ignore[arg-type]
    assert (result.tier, result.escalation) == (Tier.REMOTE, Escalation.LOW_CONFIDENCE)
    assert result.confidence == pytest.approx(0.4)


async def test_a_backend_that_cannot_constrain_is_skipped_for_the_remote_tier() -> None:
    local, remote = JsonLocal(constrains_json=False), JsonRemote()
    result = await router(local, remote).generate(req())  # type: ignore[arg-type]
    assert (result.tier, result.text, result.escalation) == (Tier.REMOTE, GOOD, Escalation.LOCAL_ERROR)
    skipped = result.attempts[0]
    assert (skipped.outcome, skipped.error) == ("skipped", "scripted cannot constrain its answer to JSON")
    assert local.calls == []


async def test_local_only_without_a_constraining_backend_is_invalid_argument() -> None:
    r = router(JsonLocal(constrains_json=False), JsonRemote())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"^response_format: the local backend \(scripted\) cannot constrain"):
        r.decide(req(privacy=Privacy.LOCAL_ONLY))
    with pytest.raises(InvalidArgument, match=r"^response_format: not a valid JSON schema"):
        r.decide(req(ResponseFormat(structured.canonical({"type": 3}))))
    assert r.decide(req(None, privacy=Privacy.LOCAL_ONLY)).call.response_format is None


async def test_an_invalid_local_answer_never_reaches_the_client() -> None:
    local = JsonLocal(text='{"signal": "short"}')
    result = await router(local, JsonRemote()).generate(req())  # type: ignore[arg-type]
    assert (result.tier, result.text, result.escalation) == (Tier.REMOTE, GOOD, Escalation.LOCAL_ERROR)
    assert result.attempts[0].outcome == "invalid" and "'size' is a required property" in result.attempts[0].error
    with pytest.raises(Unavailable, match="does not validate"):
        await router(local, JsonRemote()).generate(req(privacy=Privacy.LOCAL_ONLY))  # type: ignore[arg-type]


async def test_a_structured_stream_is_the_validated_answer_in_one_piece() -> None:
    r = router(JsonLocal(), ScriptedRemote())  # type: ignore[arg-type]
    events = [event async for event in r.stream(req())]
    assert [e.text for e in events if isinstance(e, Delta)] == [GOOD]
    final = events[-1]
    assert isinstance(final, Result) and final.text == GOOD and final.tier is Tier.LOCAL


@dataclass
class JsonRemote(ScriptedRemote):
    async def complete(self, call: BackendCall, **kwargs: Any) -> Any:
        answer = await super().complete(call, **kwargs)
        return type(answer)(Completion(GOOD, "anthropic", "big", Usage(9, 9), "stop"), answer.attempts)


# -- the remote tier: an answer that does not validate fails over ---------------------------------------------


async def test_a_provider_answer_that_does_not_validate_fails_over(make: Make) -> None:  # noqa: F811
    h = await make()
    h.fakes["openai"].reply.text = '{"signal": "short", "size": 0.2, "reason": "x"}'
    h.fakes["anthropic"].reply.text = GOOD
    call = BackendCall(CALL.request_id, CALL.messages, 64, response_format=TRADE)
    result = await h.tier.complete(call, order=("openai", "anthropic"), deadline=None)
    assert (result.completion.provider, json.loads(result.completion.text)) == ("anthropic", json.loads(GOOD))
    assert [(a.provider, a.outcome) for a in result.attempts] == [("openai", "error"), ("anthropic", "ok")]
    assert "does not validate against the schema" in result.attempts[0].error
    assert h.fakes["anthropic"].seen[-1].body["tool_choice"] == {"type": "tool", "name": "trade"}
    assert h.fakes["openai"].requests == 1  # not retried: the same question would get the same answer


def test_the_values_tokens_decide_not_the_format_the_schema_forced() -> None:
    """Keys, quotes and braces come from the schema: a backend reports them before the constraint, as unlikely."""
    text = '{"signal": "sell", "reason": "momentum fades"}'
    pieces = ['{"signal": "', "sell", '", "reason": "', "momentum", " fades", '"}']
    format_logprob = math.log(0.01)  # what the unconstrained model thought of the forced text
    top = {"sell": math.log(0.6), "buy": math.log(0.3), "hold": math.log(0.1)}
    tokens = (
        TokenLogprob(pieces[0], format_logprob),
        TokenLogprob(pieces[1], math.log(0.6), top),
        TokenLogprob(pieces[2], format_logprob),
        TokenLogprob(pieces[3], math.log(0.9)),
        TokenLogprob(pieces[4], math.log(0.8)),
        TokenLogprob(pieces[5], format_logprob),
    )
    schema = {"type": "object", "properties": {k: TRADE_SCHEMA["properties"][k] for k in ("signal", "reason")}}  # type: ignore[index]
    fmt = ResponseFormat(structured.canonical(schema))
    # the reason's tokens (0.9, 0.8; the quantile 0.1 of two lies near the lower) and the signal's choice (0.6)
    assert structured.answer_confidence(text, tokens, fmt, 0.1) == pytest.approx(0.6)
    sure_top = {"sell": math.log(0.98), "buy": math.log(0.01), "hold": math.log(0.01)}
    sure = tuple(TokenLogprob(t.token, t.logprob, sure_top if t.top else {}) for t in tokens)
    assert structured.answer_confidence(text, sure, fmt, 0.1) == pytest.approx(0.81)  # the reason's tokens now
    # tokens that do not spell JSON count whole, as free text
    broken = (*tokens[:-1], TokenLogprob("", format_logprob))
    assert structured.answer_confidence(text, broken[:-2], fmt, 0.0) == pytest.approx(0.01)


def test_json_value_spans_skip_keys_and_punctuation() -> None:
    from gateway.core.json_spans import value_spans

    text = '{"a": [1, -2.5e3, "x\\"y"], "b": {"c": true, "d": null}, "e": false}'
    found = {span.path: text[span.start : span.end] for span in value_spans(text)}
    assert found == {
        ("a", 0): "1",
        ("a", 1): "-2.5e3",
        ("a", 2): '"x\\"y"',
        ("b", "c"): "true",
        ("b", "d"): "null",
        ("e",): "false",
    }
    assert value_spans('{"a": 1') == () and value_spans('{"a": 1} x') == () and value_spans("") == ()
