"""What the client sends and gets back: frozen dataclasses and enums, never proto objects."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Tier(enum.StrEnum):
    UNSPECIFIED = "unspecified"  # also what an answer from a newer server with an unknown tier reads as
    LOCAL = "local"
    REMOTE = "remote"
    CACHE = "cache"


class Escalation(enum.StrEnum):
    NONE = "none"
    LOW_CONFIDENCE = "low_confidence"
    LOCAL_CAPACITY = "local_capacity"
    LOCAL_ERROR = "local_error"
    RULE = "rule"
    TOOLS = "tools"  # the request uses tools and the local backend does not support them
    UNKNOWN = "unknown"  # a reason this client does not know yet (a newer server)


class Priority(enum.StrEnum):
    NORMAL = "normal"
    URGENT = "urgent"


class Privacy(enum.StrEnum):
    DEFAULT = "default"
    LOCAL_ONLY = "local_only"  # never leaves the box


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # system | user | assistant
    content: str


@dataclass(frozen=True, slots=True)
class Request:
    """One request. `messages` may be a plain string: one user message."""

    messages: str | Sequence[Message]
    task: str = ""  # selects the LoRA adapter, e.g. "trend"; empty = general
    model: str = ""  # optional pin: a local model/adapter name or "provider/model"
    max_tokens: int = 0  # 0 = the server's default
    temperature: float = 0.0
    priority: Priority = Priority.NORMAL
    privacy: Privacy = Privacy.DEFAULT
    min_confidence: float | None = None  # overrides the adapter's calibrated threshold
    bypass_cache: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    semantic_cache: bool | None = None  # answer paraphrases from the cache too (True) or not; None = the task's
    request_id: str = ""  # echoed back; the server makes one when empty
    stop: Sequence[str] = ()  # stop sequences (at most 4): the answer ends before the first, which it leaves out
    # A JSON answer: a JSON schema it must validate against, {} for any JSON object; None = free text
    json_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cached_prompt_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to the provider's prompt cache


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at a tier or provider on the way to the answer."""

    provider: str
    model: str
    outcome: str
    latency_ms: float
    error: str


@dataclass(frozen=True, slots=True)
class Result:
    request_id: str
    text: str
    tier: Tier
    provider: str
    model: str
    confidence: float | None  # local confidence in [0, 1] when a local answer was produced
    escalation: Escalation
    usage: Usage
    attempts: tuple[Attempt, ...]
    finish_reason: str
    latency_ms: float  # inside the gateway


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str  # what a request puts in `model`
    tier: Tier
    provider: str
    task: str
    metrics: Mapping[str, float]


@dataclass(frozen=True, slots=True)
class ProviderUsage:
    provider: str
    tokens_used: int
    token_budget: int  # 0 = no limit
    requests: int


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class TaskAccuracy:
    task: str
    audited: int
    agreed: int
    estimate: float  # NaN before the first audit
    low: float
    high: float
    threshold: float
    target: float


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Today's figures (UTC day `day`) across every replica sharing the usage store."""

    day: str
    requests: int
    providers: tuple[ProviderUsage, ...]
    requests_by_tier: Mapping[str, int]
    tokens_by_tier: Mapping[str, int]
    requests_by_provider: Mapping[str, int]
    escalations_by_reason: Mapping[str, int]
    latency: LatencySummary
    cost_usd: float
    reference_cost_usd: float
    saved_usd: float
    reference_provider: str
    local_accuracy: tuple[TaskAccuracy, ...]
