"""proto <-> domain, pure functions. Validation of client input happens here, field by field."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence

from gateway.core import structured
from gateway.core.contracts import (
    Delta,
    Escalation,
    Message,
    ModelEntry,
    Priority,
    Privacy,
    Request,
    ResponseFormat,
    Result,
    Role,
    Tier,
    Tool,
    ToolCall,
    ToolChoice,
)
from gateway.core.errors import InvalidArgument
from gateway.remote.types import ProviderUsageRow
from gateway.v1 import gateway_pb2 as pb

MAX_TEMPERATURE = 2.0
_ROLES = {role.value: role for role in Role}
_TIER_TO_PB = {Tier.LOCAL: pb.TIER_LOCAL, Tier.REMOTE: pb.TIER_REMOTE, Tier.CACHE: pb.TIER_CACHE}
_ESCALATION_TO_PB = {
    Escalation.NONE: pb.ESCALATION_NONE,
    Escalation.LOW_CONFIDENCE: pb.ESCALATION_LOW_CONFIDENCE,
    Escalation.LOCAL_CAPACITY: pb.ESCALATION_LOCAL_CAPACITY,
    Escalation.LOCAL_ERROR: pb.ESCALATION_LOCAL_ERROR,
    Escalation.RULE: pb.ESCALATION_RULE,
    Escalation.TOOLS: pb.ESCALATION_TOOLS,
}
_TOOL_MODES = ("auto", "none", "required", "function")


def request_from_proto(
    msg: pb.GenerateRequest, *, default_max_tokens: int, timeout_s: float | None, field: str = ""
) -> Request:
    """Validate and convert; errors name the field (prefixed with `field`, e.g. 'requests[3].')."""
    if not msg.messages:
        raise InvalidArgument(f"{field}messages: at least one message is required")
    messages = tuple(_message(m, f"{field}messages[{i}]") for i, m in enumerate(msg.messages))
    temperature = float(msg.temperature)
    if not math.isfinite(temperature) or not 0.0 <= temperature <= MAX_TEMPERATURE:
        raise InvalidArgument(f"{field}temperature: {msg.temperature} is out of range; use 0 to {MAX_TEMPERATURE}")
    min_confidence: float | None = None
    if msg.HasField("min_confidence"):
        min_confidence = float(msg.min_confidence)
        if not math.isfinite(min_confidence) or not 0.0 <= min_confidence <= 1.0:
            raise InvalidArgument(f"{field}min_confidence: {msg.min_confidence} is out of range; use 0 to 1")
    if msg.priority not in (pb.PRIORITY_NORMAL, pb.PRIORITY_URGENT, pb.PRIORITY_BULK):
        raise InvalidArgument(f"{field}priority: unknown value {msg.priority}")
    if msg.privacy not in (pb.PRIVACY_DEFAULT, pb.PRIVACY_LOCAL_ONLY):
        raise InvalidArgument(f"{field}privacy: unknown value {msg.privacy}")
    return Request(
        request_id=msg.request_id or uuid.uuid4().hex,
        messages=messages,
        max_tokens=msg.max_tokens or default_max_tokens,
        temperature=temperature,
        task=msg.task,
        model=msg.model,
        priority=Priority(msg.priority),
        privacy=Privacy(msg.privacy),
        min_confidence=min_confidence,
        bypass_cache=msg.bypass_cache,
        semantic_cache=msg.semantic_cache if msg.HasField("semantic_cache") else None,
        tags=dict(msg.tags),
        deadline=None if timeout_s is None else time.monotonic() + timeout_s,
        stop=tuple(msg.stop),
        response_format=_response_format(msg, field),
        tools=tuple(_tool(t, f"{field}tools[{i}]") for i, t in enumerate(msg.tools)),
        tool_choice=_tool_choice(msg, field),
        parallel_tool_calls=(
            msg.tool_choice.parallel_tool_calls
            if msg.HasField("tool_choice") and msg.tool_choice.HasField("parallel_tool_calls")
            else None
        ),
    )


def _tool(msg: pb.Tool, where: str) -> Tool:
    """A Tool: its parameters must be a JSON object (a valid JSON schema, and its name: routing)."""
    parameters = ""
    if msg.parameters:
        try:
            schema = json.loads(msg.parameters)
        except ValueError as exc:
            raise InvalidArgument(f"{where}.parameters: not JSON ({exc})") from None
        if not isinstance(schema, dict):
            raise InvalidArgument(f"{where}.parameters: expected a JSON schema object")
        parameters = structured.canonical(schema)
    return Tool(msg.name, msg.description, parameters, msg.strict)


def _tool_choice(msg: pb.GenerateRequest, field: str) -> ToolChoice | None:
    if not msg.HasField("tool_choice") or not msg.tool_choice.mode:
        return None
    mode = msg.tool_choice.mode
    if mode not in _TOOL_MODES:
        raise InvalidArgument(f"{field}tool_choice.mode: '{mode}' is not one of {', '.join(_TOOL_MODES)}")
    return ToolChoice(mode, msg.tool_choice.name)


def _response_format(msg: pb.GenerateRequest, field: str) -> ResponseFormat | None:
    """GenerateRequest.response_format: the schema's text must be a JSON object (a valid JSON schema: routing)."""
    if not msg.HasField("response_format"):
        return None
    fmt = msg.response_format
    if not fmt.json_schema:
        return ResponseFormat(name=fmt.name or "response", strict=fmt.strict)
    try:
        schema = json.loads(fmt.json_schema)
    except ValueError as exc:
        raise InvalidArgument(f"{field}response_format.json_schema: not JSON ({exc})") from None
    if not isinstance(schema, dict):
        raise InvalidArgument(f"{field}response_format.json_schema: expected a JSON object")
    return ResponseFormat(structured.canonical(schema), fmt.name or "response", fmt.strict)


def _message(msg: pb.ChatMessage, where: str) -> Message:
    role = _ROLES.get(msg.role)
    if role is None:
        raise InvalidArgument(f"{where}.role: '{msg.role}' is not one of {', '.join(_ROLES)}")
    if msg.tool_calls and role is not Role.ASSISTANT:
        raise InvalidArgument(f"{where}.tool_calls: only an assistant message carries tool calls")
    if role is Role.TOOL and not msg.tool_call_id:
        raise InvalidArgument(f"{where}.tool_call_id: a tool message names the call it answers")
    if role is not Role.TOOL and (msg.tool_call_id or msg.name):
        raise InvalidArgument(f"{where}.tool_call_id: only a tool message answers a call")
    if not msg.content.strip() and not msg.tool_calls and role is not Role.TOOL:
        raise InvalidArgument(f"{where}.content: must not be empty")
    calls = tuple(ToolCall(c.id, c.name, c.arguments or "{}") for c in msg.tool_calls)
    return Message(role, msg.content, calls, msg.tool_call_id, msg.name)


def chunk_to_proto(delta: Delta) -> pb.GenerateChunk:
    """A streamed piece: text, and pieces of tool calls."""
    return pb.GenerateChunk(
        text=delta.text,
        tool_calls=[
            pb.ToolCallDelta(index=p.index, id=p.id, name=p.name, arguments=p.arguments) for p in delta.tool_calls
        ],
    )


def response_to_proto(result: Result) -> pb.GenerateResponse:
    response = pb.GenerateResponse(
        request_id=result.request_id,
        text=result.text,
        tier=_TIER_TO_PB[result.tier],
        provider=result.provider,
        model=result.model,
        escalation=_ESCALATION_TO_PB[result.escalation],
        usage=pb.Usage(
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            cached_prompt_tokens=result.usage.cached_prompt_tokens,
            cache_write_tokens=result.usage.cache_write_tokens,
        ),
        attempts=[
            pb.Attempt(provider=a.provider, model=a.model, outcome=a.outcome, latency_ms=a.latency_ms, error=a.error)
            for a in result.attempts
        ],
        finish_reason=result.finish_reason,
        latency_ms=result.latency_ms,
        overhead_ms=result.overhead_ms,
        tool_calls=[pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in result.tool_calls],
    )
    if result.confidence is not None:
        response.confidence = result.confidence
    return response


def models_to_proto(entries: Sequence[ModelEntry]) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        models=[
            pb.ModelInfo(
                name=e.name, tier=_TIER_TO_PB[e.tier], provider=e.provider, task=e.task, metrics=dict(e.metrics)
            )
            for e in entries
        ]
    )


def provider_usage_to_proto(rows: Sequence[ProviderUsageRow]) -> list[pb.ProviderUsage]:
    """The remote tier's per-provider spend today; token_budget 0 means no limit."""
    return [
        pb.ProviderUsage(
            provider=row.provider, tokens_used=row.tokens_used, token_budget=row.token_budget, requests=row.requests
        )
        for row in rows
    ]
