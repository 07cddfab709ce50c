"""proto <-> domain, pure functions. Validation of client input happens here, field by field."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Sequence

from gateway.core import structured
from gateway.core.contracts import (
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
}


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
    )


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
    if not msg.content.strip():
        raise InvalidArgument(f"{where}.content: must not be empty")
    return Message(role, msg.content)


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
