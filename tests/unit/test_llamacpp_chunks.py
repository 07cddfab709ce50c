"""llama.cpp's streamed chunks -> Deltas and one Completion: tokens, label alternatives, errors, the context check."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.confidence import score
from gateway.core.contracts import Completion, Delta
from gateway.core.errors import BackendError, InvalidArgument
from local_models.llamacpp_chunks import ChunkReader

UP, DOWN = 709, 1325  # ids of " up" and " down" in this made-up vocabulary


def token(piece: str, logprob: float, alternatives: list[tuple[int, str, float]]) -> dict[str, Any]:
    return {
        "token": piece,
        "logprob": logprob,
        "top_logprobs": [{"id": i, "token": t, "logprob": lp} for i, t, lp in alternatives],
    }


def chunk(content: str = "", tokens: tuple[dict[str, Any], ...] = (), **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "delta": {"content": content} if content else {}, "finish_reason": None}
    if tokens:
        choice["logprobs"] = {"content": list(tokens)}
    return {"choices": [choice], **extra}


def reader(**fields: Any) -> ChunkReader:
    values: dict[str, Any] = {"provider": "llamacpp", "model": "m", "max_tokens": 4, "context_length": 64, "top_k": 2}
    values.update(fields)
    return ChunkReader(**values)


ALTS = [(UP, " up", -0.2), (5, " the", -2.0), (6, " a", -3.0), (7, " Up", -4.0), (DOWN, " down", -5.0)]


def test_a_label_answer_keeps_top_k_and_every_label_token_at_the_first_position() -> None:
    r = reader(label_ids=frozenset({UP, DOWN}))
    events = r.add(chunk(" up", (token(" up", -0.2, ALTS),), timings={"prompt_n": 10, "cache_n": 5}))
    events += r.add(chunk(".", (token(".", -0.1, ALTS),)))
    events += r.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    assert events == [Delta(" up"), Delta(".")]
    events = r.add({"choices": [], "usage": {"prompt_tokens": 15, "completion_tokens": 3}})
    (completion,) = events
    assert isinstance(completion, Completion)
    assert completion.text == " up." and completion.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 15 and completion.usage.completion_tokens == 2  # no end token
    first, second = completion.tokens
    assert first.top == {" up": -0.2, " the": -2.0, " down": -5.0}  # " Up" ranks below top_k and is no label form
    assert second.top == {" up": -0.2, " the": -2.0}  # later positions: top_k only
    confidence = score(completion.text, completion.tokens, ("up", "down")).confidence
    assert confidence == pytest.approx(1 / (1 + 2.718281828 ** (-5.0 + 0.2)), rel=1e-6)


def test_an_error_chunk_becomes_the_gateway_error_its_status_says() -> None:
    too_long = {"error": {"code": 400, "message": "request (431 tokens) exceeds the available context size"}}
    with pytest.raises(InvalidArgument, match="exceeds the available context"):
        reader().add(too_long)
    with pytest.raises(BackendError) as caught:
        reader().add({"error": {"code": 500, "message": "decode failed"}})
    assert caught.value.retryable


def test_a_prompt_that_leaves_no_room_for_max_tokens_is_refused_before_any_text() -> None:
    r = reader(max_tokens=20, context_length=64)
    with pytest.raises(InvalidArgument, match="exceeds the model's context of 64"):
        r.add(chunk("Hi", (token("Hi", -0.1, ALTS),), timings={"prompt_n": 30, "cache_n": 20}))
    assert r.text == ""


def test_the_completion_waits_for_the_usage_chunk() -> None:
    r = reader()
    r.add(chunk("Hi", (token("Hi", -0.1, ALTS),)))
    assert r.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}) == []
    assert not r.done
    (completion,) = r.add({"choices": [], "usage": {"prompt_tokens": 3}})
    assert isinstance(completion, Completion) and completion.finish_reason == "length" and r.done
