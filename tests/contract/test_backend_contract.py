"""One contract, every backend and provider: generate, stream, logprobs, adapters, errors, cancellation, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

import pytest

from gateway.core import confidence, structured
from gateway.core.contracts import (
    BackendCall,
    Completion,
    Delta,
    LocalBackend,
    Message,
    ResponseFormat,
    Role,
    StreamEvent,
)
from gateway.core.errors import BackendError, CapacityExceeded, DeadlineExceeded, GatewayError, InvalidArgument
from tests.contract.conftest import LONG, Subject, call
from tests.waiting import wait_until_async


async def collect(subject: Subject, the_call: BackendCall) -> tuple[list[Delta], Completion]:
    deltas: list[Delta] = []
    completions: list[Completion] = []
    async for event in subject.backend.stream(the_call):
        assert not completions, "nothing may follow the Completion"
        if isinstance(event, Delta):
            deltas.append(event)
        else:
            completions.append(event)
    assert len(completions) == 1, "a stream ends with exactly one Completion"
    return deltas, completions[0]


async def test_generate_answers_with_usage(subject: Subject) -> None:
    completion = await subject.backend.generate(call(max_tokens=6))
    assert completion.text.strip()
    assert completion.provider == subject.backend.name
    assert completion.model
    assert completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0
    assert completion.finish_reason in {"stop", "length"}
    if subject.local:
        assert completion.usage.completion_tokens <= 6


async def test_stream_yields_pieces_then_one_completion(subject: Subject) -> None:
    deltas, completion = await collect(subject, call(max_tokens=6))
    assert deltas, "text arrives in pieces before the Completion"
    assert "".join(d.text for d in deltas) == completion.text


async def test_logprobs_present_or_cleanly_absent(subject: Subject) -> None:
    completion = await subject.backend.generate(call(max_tokens=6))
    score = confidence.score(completion.text, completion.tokens)
    if not subject.logprobs:
        assert completion.tokens == ()
        assert score.confidence is None  # the router keeps such an answer: no confidence, no escalation
        return
    assert completion.tokens, f"{subject.name} must report token logprobs"
    assert all(t.logprob <= 1e-6 and not math.isnan(t.logprob) for t in completion.tokens)
    assert completion.tokens[0].top, "the first position carries its top alternatives"
    assert score.confidence is not None and 0.0 <= score.confidence <= 1.0


async def test_label_calls_widen_the_first_position(subject: Subject) -> None:
    if not subject.local or not subject.logprobs:
        pytest.skip(f"{subject.name}: label alternatives are a local-backend feature with logprobs")
    plain = await subject.backend.generate(call(max_tokens=2))
    labelled = await subject.backend.generate(call(max_tokens=2, labels=("up", "down")))
    assert len(labelled.tokens[0].top) > len(plain.tokens[0].top)
    score = confidence.score(labelled.text, labelled.tokens, ("up", "down"))
    if score.label is not None:
        assert score.confidence is not None and 0.0 <= score.confidence <= 1.0


async def test_adapter_is_selected_per_request(subject: Subject) -> None:
    if subject.adapter is None:
        pytest.skip(f"{subject.name} serves no LoRA adapters")
    base, tuned = await asyncio.gather(
        subject.backend.generate(call(max_tokens=4)),
        subject.backend.generate(call(max_tokens=4, adapter=subject.adapter)),
    )
    assert tuned.model == subject.adapter.name
    assert base.model == subject.backend.model
    changed = tuned.text != base.text or (
        tuned.tokens and base.tokens and abs(tuned.tokens[0].logprob - base.tokens[0].logprob) > 1e-4
    )
    assert changed, "the adapter must change the answer or its probabilities"


@pytest.mark.parametrize("kind", ["bad_request", "server_error", "overloaded"])
async def test_errors_map_to_gateway_errors(subject: Subject, kind: str) -> None:
    the_call = subject.provoke(kind)
    if the_call is None:
        pytest.skip(f"{subject.name} cannot be made to fail with {kind}")
    with pytest.raises(GatewayError) as caught:
        await subject.backend.generate(the_call)
    error = caught.value
    assert error.message
    if kind == "bad_request":
        assert not error.retryable
        if subject.local:
            assert isinstance(error, InvalidArgument)  # goes back to the client, never escalated
    elif kind == "server_error":
        assert isinstance(error, BackendError) and error.retryable
    elif subject.local:
        assert isinstance(error, CapacityExceeded)  # escalates as local_capacity
    else:
        assert isinstance(error, BackendError) and error.retryable


async def test_unreachable_server_is_a_retryable_backend_error(subject: Subject) -> None:
    if subject.unreachable is None:
        pytest.skip(f"{subject.name} runs in process")
    backend = subject.unreachable()
    try:
        with pytest.raises(BackendError) as caught:
            await backend.generate(call())
        assert caught.value.retryable
    finally:
        await backend.aclose()


@pytest.mark.parametrize("moment", ["while_backend_reads", "while_caller_holds"])
async def test_cancelling_the_caller_stops_the_generation(subject: Subject, moment: str) -> None:
    """while_backend_reads: the cancel lands inside the backend's await (a gRPC call cancelled mid-stream);
    while_caller_holds: the caller stops reading and closes the stream (aclose)."""
    if moment == "while_backend_reads" and subject.stopped is None:
        pytest.skip(f"{subject.name}: its stand-in sends the whole stream at once")
    subject.slow_down()
    started = asyncio.Event()

    async def consume() -> None:
        stream = cast(AsyncGenerator[StreamEvent, None], subject.backend.stream(call(LONG, max_tokens=200)))
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                if isinstance(event, Delta):
                    started.set()
                    if moment == "while_caller_holds":
                        await asyncio.Event().wait()  # a caller that stops reading

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), timeout=60)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    if subject.stopped is not None:
        assert await subject.stopped(), f"{subject.name} kept generating after the caller went away"
    if isinstance(subject.backend, LocalBackend):
        # vLLM's load also counts what its server reports running, as of the last poll: wait for a fresh one
        backend = subject.backend
        await wait_until_async(lambda: backend.load().in_flight == 0, timeout_s=30, what="no request in flight")


async def test_timeouts_end_the_call(subject: Subject) -> None:
    the_call = subject.provoke("slow")
    if the_call is None:
        pytest.skip(f"{subject.name} cannot be slowed down")
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayError) as caught:
        await subject.backend.generate(the_call)
    assert loop.time() - started < 10
    if subject.local:
        assert isinstance(caught.value, DeadlineExceeded)  # the request's deadline passed
    else:
        assert isinstance(caught.value, BackendError) and caught.value.retryable  # the provider's timeout


async def test_stop_sequences_end_the_answer_before_the_first(subject: Subject) -> None:
    """The answer with stop sequences is the answer without them, up to (not including) the first one found;
    plain and streamed, and no piece of a stop sequence is streamed."""
    free = (await subject.backend.generate(call(LONG, max_tokens=12))).text
    middle = next(i for i in range(len(free) // 3, len(free)) if not free[i].isspace())
    stop = free[middle : middle + 2]
    expected = free[: free.find(stop)]
    stopped = call(LONG, max_tokens=12, stop=(stop, "<never-said>"))
    completion = await subject.backend.generate(stopped)
    assert completion.text == expected, f"stop {stop!r} in {free!r}"
    assert completion.finish_reason == "stop"
    deltas, streamed = await collect(subject, stopped)
    assert streamed.text == expected and "".join(d.text for d in deltas) == expected
    assert streamed.finish_reason == "stop"


TRADE_SCHEMA = {
    "type": "object",
    "properties": {
        "signal": {"type": "string", "enum": ["buy", "sell", "hold"]},
        "size": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["signal", "size"],
    "additionalProperties": False,
}
TRADE = ResponseFormat(structured.canonical(TRADE_SCHEMA), "trade", strict=True)
ASK_TRADE = (Message(Role.USER, "BTC fell 3% today. Give a trading signal (buy, sell or hold) and a size, 0 to 1."),)


# What each provider's own structured-output API must be sent (its real wire field), by stand-in.
def _openai_wire(body: dict[str, Any]) -> bool:
    fmt = body["response_format"]
    return bool(fmt["type"] == "json_schema" and fmt["json_schema"]["schema"] == TRADE_SCHEMA)


SENT_AS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "openai": _openai_wire,
    "xai": _openai_wire,
    "huggingface": lambda body: body["response_format"] == {"type": "json_object", "value": TRADE_SCHEMA},  # TGI
    "anthropic": lambda body: (
        body["tool_choice"] == {"type": "tool", "name": "trade"} and body["tools"][0]["input_schema"] == TRADE_SCHEMA
    ),
    "google": lambda body: (
        body["generationConfig"]["responseMimeType"] == "application/json"
        and body["generationConfig"]["responseJsonSchema"] == TRADE_SCHEMA
    ),
    "ollama": lambda body: body["format"] == TRADE_SCHEMA,
    "ollama-nologprobs": lambda body: body["format"] == TRADE_SCHEMA,
}


async def test_structured_answers_validate_against_the_schema(subject: Subject) -> None:
    """A backend that constrains its decoding (or a provider, through its own structured-output API) answers
    JSON that validates; a local backend that cannot says so, and routing sends such requests elsewhere."""
    if subject.local and not structured.can_constrain(subject.backend):
        assert subject.name == "transformers", f"{subject.name} should constrain its decoding"
        return
    subject.answer_json('{"signal": "sell", "size": 0.25}')
    completion = await subject.backend.generate(call(ASK_TRADE, max_tokens=48, response_format=TRADE))
    assert structured.problem(completion.text, TRADE) is None, completion.text
    if subject.last_body is not None:
        assert SENT_AS[subject.name](subject.last_body()), subject.last_body()
    free = ResponseFormat()  # json_object: any JSON object
    subject.answer_json('{"note": "hold"}')
    answer = await subject.backend.generate(call(ASK_TRADE, max_tokens=48, response_format=free))
    if subject.last_body is not None or answer.finish_reason == "stop":  # a real model may run out of tokens
        assert structured.problem(answer.text, free) is None, answer.text
