"""Anthropic messages over the official async SDK (`anthropic`).

The system prompt travels apart from the messages. The Messages API reports no
token logprobs, and this SDK version takes no sampling temperature, so
`call.temperature` is not sent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from gateway.config import ProviderConfig
from gateway.core.contracts import BackendCall, Completion, Delta, StreamEvent, Usage
from gateway.core.structured import schema_of
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
        messages = [{"role": m.role.value, "content": m.content} for m in rest]
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
        if call.response_format is not None:  # through tool use: one tool taking the schema, which it must call
            fmt = call.response_format
            tool = {"name": fmt.name, "description": "Answer with this tool's input.", "input_schema": schema_of(fmt)}
            params["tools"] = [tool]
            params["tool_choice"] = {"type": "tool", "name": fmt.name}
        return params

    async def generate(self, call: BackendCall) -> Completion:
        try:
            message = await self._client.messages.create(**self._params(call))
            text = _answer(message.content, structured=call.response_format is not None)
            return Completion(
                text=text,
                provider=self.name,
                model=message.model or call.model or self.model,
                usage=_usage(message.usage),
                finish_reason=FINISH.get(message.stop_reason or "", message.stop_reason or "stop"),
            )
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        parts: list[str] = []
        model, usage, finish = call.model or self.model, Usage(), "stop"
        try:
            events = await self._client.messages.create(**self._params(call), stream=True)
            async with events:
                async for event in events:
                    if event.type == "message_start":
                        model = event.message.model or model
                        usage = _usage(event.message.usage)
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        parts.append(event.delta.text)
                        yield Delta(event.delta.text)
                    elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                        parts.append(event.delta.partial_json)  # the forced tool's input: the structured answer
                        yield Delta(event.delta.partial_json)
                    elif event.type == "message_delta":
                        late = _usage(event.usage)  # its counts are cumulative; input ones may be absent
                        usage = Usage(
                            late.prompt_tokens or usage.prompt_tokens,
                            event.usage.output_tokens,
                            late.cached_prompt_tokens or usage.cached_prompt_tokens,
                            late.cache_write_tokens or usage.cache_write_tokens,
                        )
                        reason = event.delta.stop_reason or ""
                        finish = FINISH.get(reason, reason or "stop")
        except Exception as exc:
            raise map_error(self.name, exc, key_env=self._key_env, secret=self._secret) from exc
        yield Completion("".join(parts), self.name, model, usage, finish)

    async def aclose(self) -> None:
        await self._client.close()


def _answer(content: Any, *, structured: bool) -> str:
    """The text blocks; for a structured request the forced tool's input, as JSON."""
    if structured:
        for block in content:
            if block.type == "tool_use":
                return json.dumps(block.input, ensure_ascii=False)
    return "".join(block.text for block in content if block.type == "text")


def _usage(usage: Any) -> Usage:
    """Anthropic's `input_tokens` excludes the prompt cache's tokens: the prompt is all three, of which the cache
    reads and writes are kept apart (billed at 0.1x and 1.25x the input price)."""
    written = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    read = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    prompt = int(getattr(usage, "input_tokens", 0) or 0) + written + read
    return Usage(prompt, int(getattr(usage, "output_tokens", 0) or 0), read, written)
