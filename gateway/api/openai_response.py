"""Domain Result / ModelEntry -> OpenAI chat-completions JSON, stream chunks and the x-gateway-* headers. Pure.

The gateway's own fields travel in a `gateway` object beside OpenAI's (on a stream: in the
last chunk before `data: [DONE]`) and, for plain answers, in x-gateway-* response headers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from gateway.core.contracts import ModelEntry, Result, TokenLogprob, ToolCallDelta

COMPLETION_ID_PREFIX = "chatcmpl-"
DONE = b"data: [DONE]\n\n"
_FINISH = {
    "stop": "stop",
    "length": "length",
    "max_tokens": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
}
_HEADER_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]")


def finish_reason(raw: str) -> str:
    """A backend's finish reason as one of OpenAI's: length when it ran out of tokens, tool_calls when it
    called tools, else stop."""
    return _FINISH.get(raw.lower(), "stop")


def gateway_fields(result: Result) -> dict[str, Any]:
    """The `gateway` extension object: how the answer was decided."""
    return {
        "request_id": result.request_id,
        "tier": result.tier.value,
        "provider": result.provider,
        "model": result.model,
        "confidence": result.confidence,
        "escalation": result.escalation.value,
        "attempts": [
            {
                "provider": a.provider,
                "model": a.model,
                "outcome": a.outcome,
                "latency_ms": a.latency_ms,
                "error": a.error,
            }
            for a in result.attempts
        ],
        "latency_ms": result.latency_ms,
        "overhead_ms": result.overhead_ms,
        "finish_reason": result.finish_reason,
    }


def result_headers(result: Result) -> dict[str, str]:
    """x-gateway-* headers of a plain answer. Attempts are `provider:outcome` pairs (details in the body)."""
    headers = {
        "x-gateway-request-id": result.request_id,
        "x-request-id": result.request_id,  # the OpenAI SDKs expose it as `_request_id`
        "x-gateway-tier": result.tier.value,
        "x-gateway-provider": _safe(result.provider),
        "x-gateway-escalation": result.escalation.value,
        "x-gateway-attempts": ",".join(f"{_safe(a.provider)}:{_safe(a.outcome)}" for a in result.attempts),
        "x-gateway-latency-ms": f"{result.latency_ms:.1f}",
    }
    if result.confidence is not None:
        headers["x-gateway-confidence"] = f"{result.confidence:.4f}"
    return headers


def stream_headers(request_id: str) -> dict[str, str]:
    """Headers of a stream: sent before the answer exists, so only the request id (the rest is in the last chunk)."""
    return {
        "Content-Type": "text/event-stream",
        "Cache-Control": "no-cache",
        "x-gateway-request-id": request_id,
        "x-request-id": request_id,
    }


def _usage(result: Result) -> dict[str, Any]:
    """OpenAI's usage object; a provider's prompt-cache reads go in `prompt_tokens_details.cached_tokens`."""
    usage: dict[str, Any] = {
        "prompt_tokens": result.usage.prompt_tokens,
        "completion_tokens": result.usage.completion_tokens,
        "total_tokens": result.usage.total,
    }
    if result.usage.cached_prompt_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": result.usage.cached_prompt_tokens}
    return usage


def logprobs(result: Result, top_logprobs: int | None) -> dict[str, Any] | None:
    """`choice.logprobs`: each token's logprob and its `top_logprobs` most likely alternatives (as many as the
    answering tier reported); None when the client did not ask or the tier reports none (the cache, Anthropic)."""
    if top_logprobs is None or not result.tokens:
        return None
    return {"content": [_token(t, top_logprobs) for t in result.tokens], "refusal": None}


def _token(token: TokenLogprob, top: int) -> dict[str, Any]:
    alternatives = sorted(token.top.items(), key=lambda item: item[1], reverse=True)[:top]
    return {
        **_logprob(token.token, token.logprob),
        "top_logprobs": [_logprob(text, value) for text, value in alternatives],
    }


def _logprob(text: str, value: float) -> dict[str, Any]:
    return {"token": text, "logprob": value, "bytes": list(text.encode())}


def completion_body(result: Result, *, created: int, top_logprobs: int | None = None) -> dict[str, Any]:
    """A `chat.completion` object with the `gateway` extension; token logprobs when `top_logprobs` is not None."""
    return {
        "id": COMPLETION_ID_PREFIX + result.request_id,
        "object": "chat.completion",
        "created": created,
        "model": result.model,
        "choices": [
            {
                "index": 0,
                "message": _message(result),
                "logprobs": logprobs(result, top_logprobs),
                "finish_reason": finish_reason(result.finish_reason),
            }
        ],
        "usage": _usage(result),
        "gateway": gateway_fields(result),
    }


def _message(result: Result) -> dict[str, Any]:
    """The answer's message: its text (null when it only calls tools, as OpenAI sends it) and its tool calls."""
    if not result.tool_calls:
        return {"role": "assistant", "content": result.text, "refusal": None}
    return {
        "role": "assistant",
        "content": result.text or None,
        "refusal": None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in result.tool_calls
        ],
    }


def tool_call_deltas(pieces: Sequence[ToolCallDelta]) -> list[dict[str, Any]]:
    """`delta.tool_calls` as OpenAI streams them: a call's first piece has its index, id, type and name (with
    arguments ""), later pieces the index and more of the arguments."""
    out: list[dict[str, Any]] = []
    for piece in pieces:
        entry: dict[str, Any] = {"index": piece.index}
        function: dict[str, Any] = {}
        if piece.id:
            entry["id"] = piece.id
            entry["type"] = "function"
        if piece.name:
            function["name"] = piece.name
        function["arguments"] = piece.arguments
        entry["function"] = function
        out.append(entry)
    return out


def chunk(
    request_id: str,
    *,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish: str | None = None,
    include_usage: bool = False,
) -> dict[str, Any]:
    """One `chat.completion.chunk` with a single choice."""
    body: dict[str, Any] = {
        "id": COMPLETION_ID_PREFIX + request_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if include_usage:
        body["usage"] = None  # as OpenAI: null on every chunk but the last
    return body


def final_chunks(
    result: Result, *, created: int, include_usage: bool, top_logprobs: int | None = None
) -> list[dict[str, Any]]:
    """The chunk that finishes the choice (with every token's logprobs when asked: the text's chunks came
    before the tier reported them), then (include_usage) the usage chunk; the last one carries `gateway`."""
    chunks = [
        chunk(
            result.request_id,
            created=created,
            model=result.model,
            delta={},
            finish=finish_reason(result.finish_reason),
            include_usage=include_usage,
        )
    ]
    chunks[0]["choices"][0]["logprobs"] = logprobs(result, top_logprobs)
    if include_usage:
        chunks.append(
            {
                "id": COMPLETION_ID_PREFIX + result.request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": result.model,
                "choices": [],
                "usage": _usage(result),
            }
        )
    chunks[-1]["gateway"] = gateway_fields(result)
    return chunks


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event: `data: <json>` and a blank line."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def model_object(entry: ModelEntry) -> dict[str, Any]:
    """An OpenAI `model` object; `owned_by` is the provider, the rest is in `gateway`."""
    return {
        "id": entry.name,
        "object": "model",
        "created": 0,
        "owned_by": entry.provider,
        "gateway": {
            "tier": entry.tier.value,
            "provider": entry.provider,
            "task": entry.task,
            "metrics": dict(entry.metrics),
        },
    }


def models_body(entries: Sequence[ModelEntry]) -> dict[str, Any]:
    return {"object": "list", "data": [model_object(e) for e in entries]}


def _safe(text: str) -> str:
    """A header-safe token: anything outside letters, digits and ._/- becomes '_'."""
    return _HEADER_UNSAFE.sub("_", text)
