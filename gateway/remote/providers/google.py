"""Google Gemini generateContent over the official async SDK (`google-genai`, `client.aio`).

Tools travel as function declarations (their JSON schema as `parameters_json_schema`), tool calls as
function_call parts and their results as function_response parts; automatic function calling is off.
The SDK's HTTP retries are set to one attempt (which also turns off its
implicit connection-error retry) and automatic continuation is off, so one
gateway call is one HTTP request.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
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
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from gateway.core.structured import schema_of
from gateway.remote.providers.errors import ProviderError, map_error
from gateway.remote.providers.messages import split_system

DEFAULT_MODEL = "gemini-2.5-flash"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
API_VERSION = "v1beta"
DEFAULT_KEY_ENV = "GEMINI_API_KEY"
FINISH = {"STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter"}


class GoogleProvider:
    def __init__(self, name: str, config: ProviderConfig, api_key: str) -> None:
        from google import genai
        from google.genai import types

        self.name = name
        self.model = config.model or DEFAULT_MODEL
        self.base_url = config.base_url or DEFAULT_BASE_URL
        self._key_env = config.api_key_env or DEFAULT_KEY_ENV
        self._secret = api_key
        self._top_logprobs = config.top_logprobs or 0  # not every Gemini model returns logprobs
        self._types = types
        self._client = genai.Client(
            api_key=api_key,
            vertexai=False,
            http_options=types.HttpOptions(
                base_url=self.base_url,
                api_version=API_VERSION,
                timeout=int(config.timeout_s * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),  # the gateway owns retries
            ),
        )
        _ = self._client.aio.models  # build the async client now, not inside the first deadline

    def _request(self, call: BackendCall) -> dict[str, Any]:
        types = self._types
        system, rest = split_system(call.messages)
        contents = self._contents(rest, call.messages) or [types.Content(role="user", parts=[types.Part(text=system)])]
        config = types.GenerateContentConfig(
            system_instruction=system if rest and system else None,
            max_output_tokens=call.max_tokens,
            temperature=call.temperature,
            stop_sequences=list(call.stop) or None,
            automatic_continuation=False,
        )
        if call.tools:  # function declarations; the SDK never calls them itself (no Python callables are given)
            config.tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=tool.name,
                            description=tool.description or None,
                            parameters_json_schema=json.loads(tool.parameters) if tool.parameters else None,
                        )
                        for tool in call.tools
                    ]
                )
            ]
            config.automatic_function_calling = types.AutomaticFunctionCallingConfig(disable=True)
            choice = call.tool_choice
            if choice is not None:  # Gemini has no parallel_tool_calls setting: it is not sent
                mode = {"auto": "AUTO", "required": "ANY", "function": "ANY", "none": "NONE"}[choice.mode]
                names = [choice.name] if choice.mode == "function" else None
                config.tool_config = types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(mode=mode, allowed_function_names=names)
                )
        if call.response_format is not None:  # JSON mode, with the request's JSON schema when it has one
            config.response_mime_type = "application/json"
            if call.response_format.schema:
                config.response_json_schema = schema_of(call.response_format)
        if self._top_logprobs > 0:
            config.response_logprobs = True
            config.logprobs = self._top_logprobs
        return {"model": call.model or self.model, "contents": contents, "config": config}

    def _contents(self, rest: list[Message], messages: tuple[Message, ...]) -> list[Any]:
        """The turns as Contents: an assistant turn's tool calls as function_call parts, tool results as
        function_response parts of one user turn (consecutive results together), named after their call."""
        types = self._types
        contents: list[Any] = []
        for m in rest:
            if m.role is Role.TOOL:
                response = types.FunctionResponse(
                    id=m.tool_call_id or None,
                    name=m.name or tools.name_of(messages, m.tool_call_id),
                    response={"output": m.content},
                )
                part = types.Part(function_response=response)
                last = contents[-1] if contents else None
                if last is not None and last.role == "user" and all(p.function_response for p in last.parts or ()):
                    last.parts.append(part)
                else:
                    contents.append(types.Content(role="user", parts=[part]))
                continue
            parts = [types.Part(text=m.content)] if m.content.strip() or not m.tool_calls else []
            parts.extend(
                types.Part(
                    function_call=types.FunctionCall(
                        id=c.id or None, name=c.name, args=tools.arguments_object(c.arguments)
                    )
                )
                for c in m.tool_calls
            )
            contents.append(types.Content(role="model" if m.role is Role.ASSISTANT else "user", parts=parts))
        return contents

    async def generate(self, call: BackendCall) -> Completion:
        try:
            response = await self._client.aio.models.generate_content(**self._request(call))
            candidate = response.candidates[0] if response.candidates else None
            calls = _calls(candidate, 0)
            return Completion(
                text=_text(candidate),
                provider=self.name,
                model=response.model_version or call.model or self.model,
                usage=_usage(response.usage_metadata),
                finish_reason=tools.FINISH if calls else _finish(candidate),
                tokens=tuple(_logprobs(candidate)),
                tool_calls=calls,
            )
        except Exception as exc:
            raise self._error(exc) from exc

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        parts: list[str] = []
        tokens: list[TokenLogprob] = []
        model, usage, finish = call.model or self.model, Usage(), "stop"
        made: list[ToolCall] = []
        try:
            chunks = await self._client.aio.models.generate_content_stream(**self._request(call))
            async for chunk in chunks:
                candidate = chunk.candidates[0] if chunk.candidates else None
                model = chunk.model_version or model
                if chunk.usage_metadata is not None and chunk.usage_metadata.candidates_token_count is not None:
                    usage = _usage(chunk.usage_metadata)
                if candidate is not None and candidate.finish_reason is not None:
                    finish = _finish(candidate)
                tokens.extend(_logprobs(candidate))
                text = _text(candidate)
                calls = _calls(candidate, len(made))  # Gemini sends each call whole, in one chunk
                made.extend(calls)
                if text or calls:
                    parts.append(text)
                    yield Delta(
                        text,
                        tuple(
                            ToolCallDelta(len(made) - len(calls) + i, c.id, c.name, c.arguments)
                            for i, c in enumerate(calls)
                        ),
                    )
        except Exception as exc:
            raise self._error(exc) from exc
        finish = tools.FINISH if made else finish
        yield Completion("".join(parts), self.name, model, usage, finish, tuple(tokens), tool_calls=tuple(made))

    def _error(self, exc: Exception) -> ProviderError:
        error = map_error(self.name, exc, key_env=self._key_env, secret=self._secret)
        if error.retry_after_s is None and error.status_code == 429:
            delay = _retry_delay(getattr(exc, "details", None))
            if delay is not None:
                error.retry_after_s = delay
        return error

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()


def _text(candidate: Any) -> str:
    content = getattr(candidate, "content", None)
    parts = getattr(content, "parts", None) or []
    return "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))


def _calls(candidate: Any, start: int) -> tuple[ToolCall, ...]:
    """The candidate's function_call parts as ToolCalls; one without an id (the Gemini API may send none) is
    named by its place in the answer."""
    content = getattr(candidate, "content", None)
    found: list[ToolCall] = []
    for part in getattr(content, "parts", None) or []:
        call = getattr(part, "function_call", None)
        if call is None:
            continue
        index = start + len(found)
        arguments = json.dumps(call.args or {}, ensure_ascii=False)
        found.append(ToolCall(call.id or f"call_{index}", call.name or "", arguments))
    return tuple(found)


def _finish(candidate: Any) -> str:
    reason = getattr(candidate, "finish_reason", None)
    if reason is None:
        return "stop"
    name = getattr(reason, "name", str(reason))
    return FINISH.get(name, name.lower())


def _usage(meta: Any) -> Usage:
    """Thinking tokens are billed as output; tool-use prompt tokens as input. `cached_content_token_count` (implicit
    or explicit context caching) is part of `prompt_token_count`, billed at the cached rate."""
    if meta is None:
        return Usage()
    prompt = (meta.prompt_token_count or 0) + (getattr(meta, "tool_use_prompt_token_count", 0) or 0)
    completion = (meta.candidates_token_count or 0) + (getattr(meta, "thoughts_token_count", 0) or 0)
    cached = getattr(meta, "cached_content_token_count", 0) or 0
    return Usage(int(prompt), int(completion), cached_prompt_tokens=int(cached))


def _logprobs(candidate: Any) -> list[TokenLogprob]:
    result = getattr(candidate, "logprobs_result", None)
    if result is None:
        return []
    chosen = result.chosen_candidates or []
    tops = result.top_candidates or []
    out = []
    for index, pick in enumerate(chosen):
        alts = tops[index].candidates or [] if index < len(tops) else []
        top = {alt.token or "": float(alt.log_probability or 0.0) for alt in alts}
        out.append(TokenLogprob(pick.token or "", float(pick.log_probability or 0.0), top))
    return out


def _retry_delay(details: Any) -> float | None:
    """google.rpc.RetryInfo in the error body: {"@type": ".../RetryInfo", "retryDelay": "17s"}."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        delay = item.get("retryDelay") if isinstance(item, dict) else None
        match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(delay or ""))
        if match:
            return float(match.group(1))
    return None
