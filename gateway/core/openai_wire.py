"""The OpenAI chat-completions wire format: request bodies, answers, streamed chunks, token logprobs.

One reader for every backend that speaks it: vLLM's JSON (local_models/vllm_backend.py),
the OpenAI SDK's raw JSON body and its pydantic chunk objects (OpenAI, xAI), and
huggingface_hub's dataclasses (Hugging Face). They carry the same field names, so
each field is read through `_get`: a key of a dict, an attribute of anything else.
Log-probabilities are read through `logprob`, the same on every path: -Infinity
(an impossible token, as vLLM sends it) and NaN become -9999.0, as vLLM itself clamps.
Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.contracts import BackendCall, Completion, ResponseFormat, TokenLogprob, Usage
from gateway.core.structured import schema_of

LOGPROB_FLOOR = -9999.0


def _get(obj: Any, name: str) -> Any:
    """`obj[name]` for a dict (decoded JSON; huggingface_hub's types are dicts too), else `obj.name`; None if absent."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def logprob(value: Any) -> float:
    """A log-probability as a finite float: below -9999 (-Infinity included) and NaN -> -9999.0, +Infinity -> 0.0."""
    number = float(value)
    if number >= LOGPROB_FLOOR:  # False for NaN
        return number if number != math.inf else 0.0
    return LOGPROB_FLOOR


def read_tokens(logprobs: Any) -> list[TokenLogprob]:
    """`choice.logprobs` (None when the server sent none) -> one TokenLogprob per token, with its top alternatives."""
    tokens: list[TokenLogprob] = []
    if logprobs is None:
        return tokens
    for entry in _get(logprobs, "content") or ():
        top = {str(_get(alt, "token")): logprob(_get(alt, "logprob")) for alt in _get(entry, "top_logprobs") or ()}
        tokens.append(TokenLogprob(str(_get(entry, "token")), logprob(_get(entry, "logprob")), top))
    return tokens


def read_usage(usage: Any) -> Usage:
    """The `usage` object (None when absent) -> Usage; `prompt_tokens_details.cached_tokens` (OpenAI, xAI) are
    the prompt tokens read from the provider's prompt cache, already counted in `prompt_tokens`."""
    if not usage:
        return Usage()
    cached = _get(_get(usage, "prompt_tokens_details"), "cached_tokens") or 0
    return Usage(
        int(_get(usage, "prompt_tokens") or 0), int(_get(usage, "completion_tokens") or 0), cached_prompt_tokens=int(cached)
    )


def _counted(usage: Usage, tokens: list[TokenLogprob]) -> Usage:
    """A server that reports no completion tokens still sent one logprob entry per token."""
    if usage.completion_tokens == 0 and tokens:
        return Usage(usage.prompt_tokens, len(tokens), usage.cached_prompt_tokens, usage.cache_write_tokens)
    return usage


def read_completion(response: Any, provider: str, model: str) -> Completion:
    """A chat completion (the JSON body, or an SDK's response object) -> Completion; `model` if it names none."""
    choices = _get(response, "choices")
    choice = choices[0] if choices else None
    if choice is None:
        text, finish, tokens = "", "error", []
    else:
        text = _get(_get(choice, "message"), "content") or ""
        finish = _get(choice, "finish_reason") or "stop"
        tokens = read_tokens(_get(choice, "logprobs"))
    return Completion(
        text=text,
        provider=provider,
        model=_get(response, "model") or model,
        usage=_counted(read_usage(_get(response, "usage")), tokens),
        finish_reason=str(finish),
        tokens=tuple(tokens),
    )


@dataclass
class ChunkAccumulator:
    """Folds streamed chat.completion.chunk objects (JSON or SDK objects) into the final Completion.

    `add` returns the new text of each chunk. `finish_reason` stays "" until a chunk
    finishes the answer (a stream cut short has none). The model named by the chunks
    replaces `model` unless `keep_model` (vLLM reports the adapter by its own name).
    """

    provider: str
    model: str
    keep_model: bool = False
    text: str = ""
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str = ""
    usage: Usage = field(default_factory=Usage)

    def add(self, chunk: Any) -> str:
        if not self.keep_model:
            self.model = _get(chunk, "model") or self.model
        usage = _get(chunk, "usage")
        if usage:
            self.usage = read_usage(usage)
        piece = ""
        for choice in _get(chunk, "choices") or ():
            delta = _get(choice, "delta") or _get(choice, "message")
            if delta is not None:
                piece += _get(delta, "content") or ""
            self.tokens.extend(read_tokens(_get(choice, "logprobs")))
            finish = _get(choice, "finish_reason")
            if finish:
                self.finish_reason = str(finish)
        self.text += piece
        return piece

    def completion(self) -> Completion:
        return Completion(
            text=self.text,
            provider=self.provider,
            model=self.model,
            usage=_counted(self.usage, self.tokens),
            finish_reason=self.finish_reason or "stop",
            tokens=tuple(self.tokens),
        )


def chat_body(call: BackendCall, model: str, *, top_logprobs: int, stream: bool = True) -> dict[str, Any]:
    """The /v1/chat/completions body for one call; logprobs are always asked for, `stop` when the call has any."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role.value, "content": m.content} for m in call.messages],
        "max_tokens": call.max_tokens,
        "temperature": max(call.temperature, 0.0),
        "logprobs": True,
        "top_logprobs": top_logprobs,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    if call.stop:
        body["stop"] = list(call.stop)
    if call.response_format is not None:
        body["response_format"] = constrained_format(call.response_format)
    return body


def constrained_format(fmt: ResponseFormat) -> dict[str, Any]:
    """`response_format` for a local server that constrains its decoding (vLLM): always a
    json_schema, so json_object too is held to an object ({"type": "object"}) rather than any JSON value."""
    return {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": schema_of(fmt), "strict": True}}


def response_format(fmt: ResponseFormat) -> dict[str, Any]:
    """OpenAI's `response_format` for a structured answer: json_object, or json_schema with its name and strict."""
    if not fmt.schema:
        return {"type": "json_object"}
    schema = {"name": fmt.name, "schema": json.loads(fmt.schema), "strict": fmt.strict}
    return {"type": "json_schema", "json_schema": schema}


def parse_sse_line(line: str) -> Mapping[str, Any] | None:
    """One `data: {...}` line of a server-sent event stream -> its JSON; None for the rest and [DONE]."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return None
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else None
