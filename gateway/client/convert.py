"""Request -> proto, proto -> result dataclasses: pure functions."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from typing import TypeVar

import grpc

from gateway.client.errors import GatewayError
from gateway.client.types import (
    Attempt,
    Escalation,
    LatencySummary,
    Message,
    ModelInfo,
    Priority,
    Privacy,
    ProviderUsage,
    Request,
    Result,
    TaskAccuracy,
    Tier,
    Usage,
    UsageReport,
)
from gateway.v1 import gateway_pb2 as pb

E = TypeVar("E", bound=enum.Enum)

_PRIORITY = {Priority.NORMAL: pb.PRIORITY_NORMAL, Priority.URGENT: pb.PRIORITY_URGENT}
_PRIVACY = {Privacy.DEFAULT: pb.PRIVACY_DEFAULT, Privacy.LOCAL_ONLY: pb.PRIVACY_LOCAL_ONLY}
_TIER = {pb.TIER_LOCAL: Tier.LOCAL, pb.TIER_REMOTE: Tier.REMOTE, pb.TIER_CACHE: Tier.CACHE}
_ESCALATION = {
    pb.ESCALATION_NONE: Escalation.NONE,
    pb.ESCALATION_LOW_CONFIDENCE: Escalation.LOW_CONFIDENCE,
    pb.ESCALATION_LOCAL_CAPACITY: Escalation.LOCAL_CAPACITY,
    pb.ESCALATION_LOCAL_ERROR: Escalation.LOCAL_ERROR,
    pb.ESCALATION_RULE: Escalation.RULE,
    pb.ESCALATION_TOOLS: Escalation.TOOLS,
}


def as_request(request: Request | str) -> Request:
    return Request(request) if isinstance(request, str) else request


def request_to_proto(request: Request | str) -> pb.GenerateRequest:
    r = as_request(request)
    messages: Sequence[Message] = [Message("user", r.messages)] if isinstance(r.messages, str) else r.messages
    msg = pb.GenerateRequest(
        request_id=r.request_id,
        messages=[pb.ChatMessage(role=m.role, content=m.content) for m in messages],
        task=r.task,
        model=r.model,
        max_tokens=r.max_tokens,
        temperature=r.temperature,
        priority=_PRIORITY[_member(Priority, r.priority, "priority")],
        privacy=_PRIVACY[_member(Privacy, r.privacy, "privacy")],
        bypass_cache=r.bypass_cache,
        tags=dict(r.tags),
        stop=list(r.stop),
    )
    if r.min_confidence is not None:
        msg.min_confidence = r.min_confidence
    if r.semantic_cache is not None:
        msg.semantic_cache = r.semantic_cache
    if r.json_schema is not None:
        msg.response_format.json_schema = json.dumps(dict(r.json_schema)) if r.json_schema else ""
        msg.response_format.SetInParent()
    return msg


def _member(kind: type[E], value: object, field: str) -> E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in kind)
        raise ValueError(f"{field}: {value!r} is not one of {choices}") from None


def result_from_proto(msg: pb.GenerateResponse) -> Result:
    return Result(
        request_id=msg.request_id,
        text=msg.text,
        tier=_TIER.get(msg.tier, Tier.UNSPECIFIED),
        provider=msg.provider,
        model=msg.model,
        confidence=msg.confidence if msg.HasField("confidence") else None,
        escalation=_ESCALATION.get(msg.escalation, Escalation.UNKNOWN),
        usage=Usage(
            msg.usage.prompt_tokens,
            msg.usage.completion_tokens,
            msg.usage.cached_prompt_tokens,
            msg.usage.cache_write_tokens,
        ),
        attempts=tuple(Attempt(a.provider, a.model, a.outcome, a.latency_ms, a.error) for a in msg.attempts),
        finish_reason=msg.finish_reason,
        latency_ms=msg.latency_ms,
    )


def models_from_proto(msg: pb.ListModelsResponse) -> list[ModelInfo]:
    return [
        ModelInfo(m.name, _TIER.get(m.tier, Tier.UNSPECIFIED), m.provider, m.task, dict(m.metrics)) for m in msg.models
    ]


def usage_from_proto(msg: pb.GetUsageResponse) -> UsageReport:
    lat = msg.latency
    return UsageReport(
        day=msg.day,
        requests=msg.requests,
        providers=tuple(ProviderUsage(p.provider, p.tokens_used, p.token_budget, p.requests) for p in msg.providers),
        requests_by_tier=dict(msg.requests_by_tier),
        tokens_by_tier=dict(msg.tokens_by_tier),
        requests_by_provider=dict(msg.requests_by_provider),
        escalations_by_reason=dict(msg.escalations_by_reason),
        latency=LatencySummary(lat.count, lat.p50_ms, lat.p90_ms, lat.p99_ms, lat.max_ms),
        cost_usd=msg.cost_usd,
        reference_cost_usd=msg.reference_cost_usd,
        saved_usd=msg.saved_usd,
        reference_provider=msg.reference_provider,
        local_accuracy=tuple(
            TaskAccuracy(a.task, a.audited, a.agreed, a.estimate, a.low, a.high, a.threshold, a.target)
            for a in msg.local_accuracy
        ),
    )


def batch_from_proto(msg: pb.GenerateBatchResponse, expected: int) -> list[Result]:
    if len(msg.responses) != expected:
        raise GatewayError(
            grpc.StatusCode.INTERNAL, f"GenerateBatch answered {len(msg.responses)} results for {expected} requests"
        )
    return [result_from_proto(r) for r in msg.responses]
