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

from gateway.core.contracts import (
    BackendCall,
    Completion,
    Message,
    ResponseFormat,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from gateway.core.structured import schema_of
from gateway.core.tools import CallAccumulator

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
        int(_get(usage, "prompt_tokens") or 0),
        int(_get(usage, "completion_tokens") or 0),
        cached_prompt_tokens=int(cached),
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
    calls: tuple[ToolCall, ...] = ()
    if choice is None:
        text, finish, tokens = "", "error", []
    else:
        message = _get(choice, "message")
        text = _get(message, "content") or ""
        calls = read_tool_calls(_get(message, "tool_calls"))
        finish = _get(choice, "finish_reason") or ("tool_calls" if calls else "stop")
        tokens = read_tokens(_get(choice, "logprobs"))
    return Completion(
        text=text,
        provider=provider,
        model=_get(response, "model") or model,
        usage=_counted(read_usage(_get(response, "usage")), tokens),
        finish_reason=str(finish),
        tokens=tuple(tokens),
        tool_calls=calls,
    )


def read_tool_calls(calls: Any) -> tuple[ToolCall, ...]:
    """`message.tool_calls` (None when absent) -> ToolCalls (function calls; other kinds are skipped)."""
    found: list[ToolCall] = []
    for call in calls or ():
        function = _get(call, "function")
        if function is None:
            continue
        arguments = _get(function, "arguments")
        if not isinstance(arguments, str):  # some servers (TGI) send the arguments parsed
            arguments = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
        found.append(
            ToolCall(str(_get(call, "id") or f"call_{len(found)}"), str(_get(function, "name") or ""), arguments)
        )
    return tuple(found)


def read_tool_deltas(calls: Any) -> tuple[ToolCallDelta, ...]:
    """`delta.tool_calls` of one chunk -> ToolCallDelta pieces."""
    pieces = []
    for position, call in enumerate(calls or ()):
        function = _get(call, "function")
        arguments = _get(function, "arguments") if function is not None else None
        if arguments is not None and not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        index = _get(call, "index")
        pieces.append(
            ToolCallDelta(
                int(index) if index is not None else position,
                str(_get(call, "id") or ""),
                str(_get(function, "name") or "") if function is not None else "",
                arguments or "",
            )
        )
    return tuple(pieces)


@dataclass
class ChunkAccumulator:
    """Folds streamed chat.completion.chunk objects (JSON or SDK objects) into the final Completion.

    `add` returns the new text of each chunk, and leaves its tool-call pieces in `tool_pieces` (the
    tool calls so far fold into the Completion's). `finish_reason` stays "" until a chunk
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
    tool_pieces: tuple[ToolCallDelta, ...] = ()
    _calls: CallAccumulator = field(default_factory=CallAccumulator)

    def add(self, chunk: Any) -> str:
        if not self.keep_model:
            self.model = _get(chunk, "model") or self.model
        usage = _get(chunk, "usage")
        if usage:
            self.usage = read_usage(usage)
        piece = ""
        tool_pieces: list[ToolCallDelta] = []
        for choice in _get(chunk, "choices") or ():
            delta = _get(choice, "delta") or _get(choice, "message")
            if delta is not None:
                piece += _get(delta, "content") or ""
                tool_pieces.extend(read_tool_deltas(_get(delta, "tool_calls")))
            self.tokens.extend(read_tokens(_get(choice, "logprobs")))
            finish = _get(choice, "finish_reason")
            if finish:
                self.finish_reason = str(finish)
        self.text += piece
        self.tool_pieces = tuple(tool_pieces)
        for tool_piece in tool_pieces:
            self._calls.add(tool_piece)
        return piece

    def completion(self) -> Completion:
        calls = self._calls.calls()
        return Completion(
            text=self.text,
            provider=self.provider,
            model=self.model,
            usage=_counted(self.usage, self.tokens),
            finish_reason=self.finish_reason or ("tool_calls" if calls else "stop"),
            tokens=tuple(self.tokens),
            tool_calls=calls,
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


def chat_messages(messages: tuple[Message, ...] | list[Message]) -> list[dict[str, Any]]:
    """OpenAI's `messages`, tool turns included: an assistant turn's `tool_calls` (content null when it
    has none) and a tool result's `tool_call_id`."""
    out: list[dict[str, Any]] = []
    for m in messages:
        entry: dict[str, Any] = {"role": m.role.value, "content": m.content}
        if m.tool_calls:
            entry["content"] = m.content or None
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
        if m.tool_call_id:
            entry["tool_call_id"] = m.tool_call_id
        out.append(entry)
    return out


def tool_params(call: BackendCall) -> dict[str, Any]:
    """OpenAI's `tools`, `tool_choice` and `parallel_tool_calls` for a call (empty when it has none)."""
    params: dict[str, Any] = {}
    if call.tools:
        tools = []
        for tool in call.tools:
            function: dict[str, Any] = {"name": tool.name}
            if tool.description:
                function["description"] = tool.description
            if tool.parameters:
                function["parameters"] = json.loads(tool.parameters)
            if tool.strict:
                function["strict"] = True
            tools.append({"type": "function", "function": function})
        params["tools"] = tools
    choice = call.tool_choice
    if choice is not None:
        if choice.mode == "function":
            params["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            params["tool_choice"] = choice.mode
    if call.parallel_tool_calls is not None and call.tools:
        params["parallel_tool_calls"] = call.parallel_tool_calls
    return params


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
