"""Anthropic messages over the official async SDK (`anthropic`).

The system prompt travels apart from the messages; tools travel as the API's tools (`input_schema`), tool
calls as tool_use blocks and their results as tool_result blocks (Anthropic's tool use). The Messages API reports no
token logprobs, and this SDK version takes no sampling temperature, so
`call.temperature` is not sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.config import ProviderConfig
from gateway.core import tools
from gateway.core.contracts import (
    BackendCall,
    Completion,
    Delta,
    Message,
    Role,
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from gateway.core.structured import schema_of
from gateway.core.tools import CallAccumulator
from gateway.remote.providers.errors import map_error
from gateway.remote.providers.messages import split_system

DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"
DEFAULT_KEY_ENV = "ANTHROPIC_API_KEY"
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "content_filter"}


class AnthropicProvider:
    prefill = True  # continues a final assistant turn in place (gateway/remote/continuation.py)

    def __init__(self, name: str, config: ProviderConfig, api_key: str) -> None:
        import anthropic

        self.name = name
        self.model = config.model or DEFAULT_MODEL
        self.base_url = config.base_url or DEFAULT_BASE_URL
        self._key_env = config.api_key_env or DEFAULT_KEY_ENV
        self._secret = api_key
        self._cache_min_chars = config.prompt_cache_min_chars if config.prompt_cache else None
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=self.base_url,
            timeout=config.timeout_s,
            max_retries=0,  # the gateway owns retries
        )
        _ = self._client.messages  # import the SDK's lazy modules now, not inside the first deadline

    def _params(self, call: BackendCall) -> dict[str, Any]:
        system, rest = split_system(call.messages)
        messages = _messages(rest)
        if not messages:  # a system-only request: send it as the user turn
            messages, system = [{"role": "user", "content": system}], ""
        params: dict[str, Any] = {
            "model": call.model or self.model,
            "max_tokens": call.max_tokens,
            "messages": messages,
        }
        if system and self._cache_min_chars is not None and len(system) >= self._cache_min_chars:
            # a long stable prefix (the system prompt, a task's template): cached for 5 minutes, read at 0.1x
            params["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        elif system:
            params["system"] = system
        if call.stop:
            params["stop_sequences"] = list(call.stop)
        tools = [_tool(tool) for tool in call.tools]
        if call.response_format is not None:  # through tool use: one tool taking the schema
            fmt = call.response_format
            tools.append(
                {"name": fmt.name, "description": "Answer with this tool's input.", "input_schema": schema_of(fmt)}
            )
            if not call.tools:  # which it must call (beside the client's tools, the model chooses)
                params["tool_choice"] = {"type": "tool", "name": fmt.name}
        if tools:
            params["tools"] = tools
        choice = _tool_choice(call)
        if choice is not None:
            params["tool_choice"] = choice
        return params

    async def generate(self, call: BackendCall) -> Completion:
        try:
            message = await self._client.messages.create(**self._params(call))
            answer = call.response_format.name if call.response_format is not None else None
            text, calls = _answer(message.content, answer_tool=answer)
            return Completion(
                text=text,
                provider=self.name,
                model=message.model or call.model or self.model,
                usage=_usage(message.usage),
                finish_reason=_finish(message.stop_reason, calls),
                tool_calls=calls,
            )
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        state = _StreamState(call.model or self.model, call.response_format.name if call.response_format else None)
        try:
            events = await self._client.messages.create(**self._params(call), stream=True)
            async with events:
                async for event in events:
                    delta = state.on(event)
                    if delta is not None:
                        yield delta
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc
        yield state.completion(self.name)

    async def aclose(self) -> None:
        await self._client.close()


@dataclass
class _StreamState:
    """What a Messages stream said so far: text (or the answer tool's JSON), tool calls, usage, stop reason."""

    model: str
    answer_tool: str | None  # the structured answer's tool: its input is the answer's text
    parts: list[str] = field(default_factory=list)
    calls: CallAccumulator = field(default_factory=CallAccumulator)
    tool_index: dict[int, int] = field(default_factory=dict)  # content block -> tool call (the client's tools)
    usage: Usage = field(default_factory=Usage)
    reason: str = ""

    def on(self, event: Any) -> Delta | None:
        """Fold one event in; the piece to stream, if it carries one."""
        if event.type == "message_start":
            self.model = event.message.model or self.model
            self.usage = _usage(event.message.usage)
        elif event.type == "content_block_start" and event.content_block.type == "tool_use":
            block = event.content_block
            if block.name != self.answer_tool:
                self.tool_index[event.index] = len(self.tool_index)
                return self._tool_piece(ToolCallDelta(self.tool_index[event.index], block.id, block.name, ""))
        elif event.type == "content_block_delta" and event.delta.type == "text_delta":
            self.parts.append(event.delta.text)
            return Delta(event.delta.text)
        elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
            if event.index in self.tool_index:  # a call of one of the client's tools: more of its arguments
                return self._tool_piece(ToolCallDelta(self.tool_index[event.index], arguments=event.delta.partial_json))
            self.parts.append(event.delta.partial_json)  # the answer tool's input: the structured answer
            return Delta(event.delta.partial_json)
        elif event.type == "message_delta":
            late = _usage(event.usage)  # cumulative counts; the input ones may be absent here
            self.usage = Usage(
                late.prompt_tokens or self.usage.prompt_tokens,
                event.usage.output_tokens,
                late.cached_prompt_tokens or self.usage.cached_prompt_tokens,
                late.cache_write_tokens or self.usage.cache_write_tokens,
            )
            self.reason = event.delta.stop_reason or ""
        return None

    def _tool_piece(self, piece: ToolCallDelta) -> Delta:
        self.calls.add(piece)
        return Delta("", (piece,))

    def completion(self, provider: str) -> Completion:
        made = tuple(replace(c, arguments=c.arguments or "{}") for c in self.calls.calls())
        reason = _finish(self.reason, made)
        return Completion("".join(self.parts), provider, self.model, self.usage, reason, tool_calls=made)


def _answer(content: Any, *, answer_tool: str | None) -> tuple[str, tuple[ToolCall, ...]]:
    """The text blocks (for a structured request the answer tool's input, as JSON), and the calls of the
    client's tools."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    structured: str | None = None
    for block in content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use" and block.name == answer_tool and structured is None:
            structured = json.dumps(block.input, ensure_ascii=False)
        elif block.type == "tool_use":
            calls.append(ToolCall(block.id, block.name, json.dumps(block.input, ensure_ascii=False)))
    return (structured if structured is not None else "".join(texts)), tuple(calls)


def _finish(reason: str | None, calls: tuple[ToolCall, ...]) -> str:
    if calls:
        return tools.FINISH
    return FINISH.get(reason or "", reason or "stop")


def _messages(rest: list[Message]) -> list[dict[str, Any]]:
    """The turns in the Messages API's shape: an assistant turn's tool calls as tool_use blocks, tool results
    as tool_result blocks of one user turn (consecutive results together, as the API wants them)."""
    out: list[dict[str, Any]] = []
    for m in rest:
        if m.role is Role.TOOL:
            result = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(result)
            else:
                out.append({"role": "user", "content": [result]})
        elif m.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content.strip() else []
            blocks.extend(
                {"type": "tool_use", "id": c.id, "name": c.name, "input": tools.arguments_object(c.arguments)}
                for c in m.tool_calls
            )
            out.append({"role": "assistant", "content": blocks})
        else:
            out.append({"role": m.role.value, "content": m.content})
    return out


def _tool(tool: Tool) -> dict[str, Any]:
    schema = json.loads(tool.parameters) if tool.parameters else {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": tool.name, "input_schema": schema}
    if tool.description:
        spec["description"] = tool.description
    if tool.strict:
        spec["strict"] = True
    return spec


def _tool_choice(call: BackendCall) -> dict[str, Any] | None:
    """tool_choice: auto, any (OpenAI's required), none, or one tool; parallel_tool_calls false as
    disable_parallel_tool_use. None: the API's default."""
    if not call.tools:
        return None
    choice = call.tool_choice
    mode = choice.mode if choice is not None else "auto"
    if choice is None and call.parallel_tool_calls is None:
        return None
    spec: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "none": "none", "function": "tool"}[mode]}
    if mode == "function" and choice is not None:
        spec["name"] = choice.name
    if call.parallel_tool_calls is False and mode != "none":
        spec["disable_parallel_tool_use"] = True
    return spec


def _usage(usage: Any) -> Usage:
    """Anthropic's `input_tokens` excludes the prompt cache's tokens: the prompt is all three, of which the cache
    reads and writes are kept apart (billed at 0.1x and 1.25x the input price)."""
    written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    prompt = int(getattr(usage, "input_tokens", 0) or 0) + written + read
    return Usage(prompt, int(getattr(usage, "output_tokens", 0) or 0), read, written)
