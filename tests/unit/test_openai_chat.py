"""OpenAI chat-completions chunks (as vLLM streams them) -> Delta text and the final Completion."""

from __future__ import annotations

import json

from gateway.core.contracts import BackendCall, Message, Role
from local_models.openai_chat import ChunkAccumulator, chat_body, parse_sse_line

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


def test_stream_chunks_become_pieces_and_a_completion() -> None:
    reader = ChunkAccumulator("vllm", "trend")
    pieces = [reader.add(chunk) for line in STREAM if (chunk := parse_sse_line(line)) is not None]
    assert pieces == ["", "The", " up", ""]
    completion = reader.completion()
    assert (completion.text, completion.finish_reason, completion.model) == ("The up", "length", "trend")
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (42, 2)
    assert [t.token for t in completion.tokens] == ["The", " up"]
    assert completion.tokens[1].top == {" up": -0.28, " down": -3.28}


def test_body_asks_for_logprobs_usage_and_the_adapter_model() -> None:
    call = BackendCall("r", (Message(Role.SYSTEM, "s"), Message(Role.USER, "u")), max_tokens=5, temperature=-1)
    body = chat_body(call, "trend@v1", top_logprobs=20)
    assert body["model"] == "trend@v1" and body["max_tokens"] == 5 and body["temperature"] == 0.0
    assert body["logprobs"] is True and body["top_logprobs"] == 20
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    json.dumps(body)


def test_minus_infinity_is_clamped() -> None:
    reader = ChunkAccumulator("vllm", "m")
    reader.add(
        {
            "choices": [
                {
                    "delta": {"content": "x"},
                    "logprobs": {"content": [{"token": "x", "logprob": float("-inf"), "top_logprobs": []}]},
                    "finish_reason": "stop",
                }
            ]
        }
    )
    assert reader.completion().tokens[0].logprob == -9999.0
