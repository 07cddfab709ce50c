"""The OpenAI chat-completions wire format: request bodies, streamed chunks (as vLLM sends them) and answers.

JSON dicts, the OpenAI SDK's pydantic objects and huggingface_hub's dataclasses are read by
the same functions and must give the same Completion.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from huggingface_hub import ChatCompletionOutput, ChatCompletionStreamOutput
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gateway.core.contracts import BackendCall, Message, Role
from gateway.core.openai_wire import ChunkAccumulator, chat_body, logprob, parse_sse_line, read_completion

# Recorded from vLLM 0.32 (CPU build), trimmed.
STREAM = [
    'data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}',
    "",
    'data: {"choices":[{"index":0,"delta":{"content":"The"},"logprobs":{"content":[{"token":"The",'
    '"logprob":-0.80,"bytes":[84,104,101],"top_logprobs":[{"token":"The","logprob":-0.80},'
    '{"token":"No","logprob":-2.9}]}]},"finish_reason":null}]}',
    ": keep-alive",
    'data: {"choices":[{"index":0,"delta":{"content":" up"},"logprobs":{"content":[{"token":" up",'
    '"logprob":-0.28,"top_logprobs":[{"token":" up","logprob":-0.28},{"token":" down","logprob":-3.28}]}]},'
    '"finish_reason":"length"}]}',
    'data: {"choices":[],"usage":{"prompt_tokens":42,"total_tokens":44,"completion_tokens":2}}',
    "data: [DONE]",
]

FULL: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-test-2026",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "BUY"},
            "finish_reason": "length",
            "logprobs": {
                "content": [
                    {
                        "token": "BUY",
                        "logprob": -0.1,
                        "bytes": [66, 85, 89],
                        "top_logprobs": [{"token": "BUY", "logprob": -0.1}, {"token": "SELL", "logprob": -2.5}],
                    }
                ]
            },
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}
BARE: dict[str, Any] = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1,
    "model": "",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}],
}
EMPTY: dict[str, Any] = {"id": "chatcmpl-3", "object": "chat.completion", "created": 1, "model": "m", "choices": []}


def impossible_token_body() -> dict[str, Any]:
    """FULL with an impossible token: vLLM sends its logprob as -Infinity (json.loads reads it as -inf)."""
    body = copy.deepcopy(FULL)
    entry = body["choices"][0]["logprobs"]["content"][0]
    entry["logprob"] = float("-inf")
    entry["top_logprobs"][1]["logprob"] = float("-inf")
    return body


def as_chunk(body: dict[str, Any]) -> dict[str, Any]:
    """The same answer as one streamed chunk: `message` becomes `delta`."""
    chunk = copy.deepcopy(body)
    chunk["object"] = "chat.completion.chunk"
    for choice in chunk["choices"]:
        choice["delta"] = choice.pop("message")
    return chunk


def test_stream_chunks_become_pieces_and_a_completion() -> None:
    reader = ChunkAccumulator("vllm", "trend", keep_model=True)
    pieces = [reader.add(chunk) for line in STREAM if (chunk := parse_sse_line(line)) is not None]
    assert pieces == ["", "The", " up", ""]
    completion = reader.completion()
    assert (completion.text, completion.finish_reason, completion.model) == ("The up", "length", "trend")
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (42, 2)
    assert [t.token for t in completion.tokens] == ["The", " up"]
    assert completion.tokens[1].top == {" up": -0.28, " down": -3.28}


def test_a_stream_cut_short_has_no_finish_reason_and_counts_its_tokens() -> None:
    reader = ChunkAccumulator("vllm", "trend")
    for line in STREAM[:3]:
        if (chunk := parse_sse_line(line)) is not None:
            reader.add(chunk)
    assert reader.finish_reason == ""
    completion = reader.completion()
    assert completion.finish_reason == "stop" and completion.usage.completion_tokens == 1


def test_body_asks_for_logprobs_usage_and_the_adapter_model() -> None:
    call = BackendCall("r", (Message(Role.SYSTEM, "s"), Message(Role.USER, "u")), max_tokens=5, temperature=-1)
    body = chat_body(call, "trend@v1", top_logprobs=20)
    assert body["model"] == "trend@v1" and body["max_tokens"] == 5 and body["temperature"] == 0.0
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    json.dumps(body)


@pytest.mark.parametrize("body", [FULL, BARE, EMPTY], ids=["logprobs-usage", "no-content-no-usage", "no-choices"])
def test_json_reader_matches_the_model_reader(body: dict[str, Any]) -> None:
    from_json = read_completion(body, "openai", "gpt-test")
    assert from_json == read_completion(ChatCompletion.model_validate(body), "openai", "gpt-test")
    assert from_json.model == (body["model"] or "gpt-test")


def test_chunk_objects_and_json_chunks_give_the_same_completion() -> None:
    chunk = as_chunk(FULL)
    from_json = ChunkAccumulator("openai", "gpt-test")
    from_sdk = ChunkAccumulator("openai", "gpt-test")
    assert from_json.add(chunk) == from_sdk.add(ChatCompletionChunk.model_validate(chunk)) == "BUY"
    assert from_json.completion() == from_sdk.completion()
    assert from_sdk.completion().model == "gpt-test-2026"  # the model the provider named wins ...
    kept = ChunkAccumulator("vllm", "trend", keep_model=True)
    kept.add(chunk)
    assert kept.completion().model == "trend"  # ... unless the caller names it (vLLM's adapters)


def test_minus_infinity_is_clamped_the_same_on_every_path() -> None:
    body = impossible_token_body()
    chunk = as_chunk(body)
    completions = [
        read_completion(body, "openai", "m"),  # OpenAI's raw JSON body
        read_completion(ChatCompletion.model_validate(body), "openai", "m"),  # SDK response model
        read_completion(ChatCompletionOutput.parse_obj(body), "openai", "m"),  # huggingface_hub dataclass
    ]
    for streamed in (chunk, ChatCompletionChunk.model_validate(chunk), ChatCompletionStreamOutput.parse_obj(chunk)):
        reader = ChunkAccumulator("openai", "m")
        reader.add(streamed)
        completions.append(reader.completion())
    for completion in completions:
        assert completion.tokens[0].logprob == -9999.0
        assert completion.tokens[0].top == {"BUY": -0.1, "SELL": -9999.0}
    assert all(c == completions[0] for c in completions)


def test_logprob_clamps_what_is_not_finite() -> None:
    assert [logprob(v) for v in (-0.5, 0.0, -12000.0, float("-inf"), float("nan"), float("inf"))] == [
        -0.5,
        0.0,
        -9999.0,
        -9999.0,
        -9999.0,
        0.0,
    ]
