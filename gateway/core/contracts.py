"""The shared domain types: what the gateway, local backends and providers exchange.

Standard library only. Proto types stay at the gRPC edge (gateway/api/convert.py);
backends and providers depend on this module and nothing above it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"  # a tool's result, answering an assistant turn's tool call (`tool_call_id`)


class Priority(enum.Enum):
    NORMAL = 0
    URGENT = 1
    BULK = 2  # batch work: a smaller share of each tier, shed first (routing/admission.py)


class Privacy(enum.Enum):
    DEFAULT = 0
    LOCAL_ONLY = 1


class Tier(enum.StrEnum):
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


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asks the client to make: the tool's name and its arguments as JSON text."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it (OpenAI's `function.arguments`)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A streamed piece of a tool call (OpenAI's `delta.tool_calls[]`): the first piece of call `index` names
    its id and tool, the rest carry more of its arguments' text."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: its name, what it does, and its parameters as a JSON schema kept as
    canonical JSON text (sorted keys) so the value stays hashable."""

    name: str
    description: str = ""
    parameters: str = ""  # "" = no parameters given
    strict: bool = False  # OpenAI's `strict`: passed on to providers that take it


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """Whether and which tool the model must call: "auto" (it decides), "none", "required" (some tool), or
    "function" (the tool named `name`)."""

    mode: str = "auto"
    name: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant turn that called tools
    tool_call_id: str = ""  # a TOOL turn: the call it answers
    name: str = ""  # a TOOL turn: the tool's name, when known (Gemini wants it)


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """A structured answer: a JSON object (`schema` empty: OpenAI's json_object), or JSON that validates
    against `schema`, a JSON schema kept as canonical JSON text (sorted keys) so the value stays hashable."""

    schema: str = ""
    name: str = "response"  # the schema's name, as providers that want one are sent it
    strict: bool = False  # OpenAI's `strict`: passed on to providers that take it


@dataclass(frozen=True, slots=True)
class Request:
    """A validated generation request, as the router sees it."""

    request_id: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.0
    task: str = ""
    model: str = ""
    priority: Priority = Priority.NORMAL
    privacy: Privacy = Privacy.DEFAULT
    min_confidence: float | None = None
    bypass_cache: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None  # time.monotonic() value; None = no deadline
    client: str = ""  # the authenticated caller (API key name or certificate subject); "" = anonymous
    traceparent: str = ""  # the caller's W3C trace context (gRPC metadata or HTTP headers); "" = none
    tracestate: str = ""
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (not included); checked in routing
    top_logprobs: int | None = None  # report each token's logprob and this many alternatives; None = none reported
    response_format: ResponseFormat | None = None  # a structured (JSON) answer; None = free text
    semantic_cache: bool | None = None  # look up paraphrases too (True) or not (False); None = the task's setting
    tools: tuple[Tool, ...] = ()  # functions the model may call (only tiers that support tools take the request)
    tool_choice: ToolChoice | None = None  # None = the provider's default ("auto" with tools)
    parallel_tool_calls: bool | None = None  # None = the provider's default

    def uses_tools(self) -> bool:
        """Tools offered, or a conversation that carries tool calls or results: only a tool-capable tier
        can answer it."""
        return bool(self.tools) or any(m.tool_calls or m.role is Role.TOOL for m in self.messages)

    def remaining_s(self, now: float | None = None) -> float | None:
        if self.deadline is None:
            return None
        return self.deadline - (time.monotonic() if now is None else now)


@dataclass(frozen=True, slots=True)
class AdapterRef:
    """Identity of a LoRA adapter: what a backend needs to select it."""

    name: str
    version: str
    path: str


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a task means for routing: its adapter, label set and escalation threshold."""

    name: str
    labels: tuple[str, ...] = ()
    threshold: float | None = None  # None: the routing default
    adapter: AdapterRef | None = None
    calibration_temperature: float = 1.0  # temperature scaling fitted on the validation split
    system_prompt: str = ""  # prepended when the request has no system message
    metrics: Mapping[str, float] = field(default_factory=dict)
    compact_prompt: bool = False  # compact the new turn losslessly before it goes to a paid provider


class TaskCatalog(Protocol):
    """Where tasks come from: config, adapter cards. Lookups are cheap and never block."""

    def get(self, name: str) -> TaskSpec | None: ...

    def all(self) -> list[TaskSpec]: ...


@dataclass(frozen=True, slots=True)
class BackendCall:
    """What a local backend or provider is asked to do for one request."""

    request_id: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float = 0.0
    adapter: AdapterRef | None = None
    labels: tuple[str, ...] = ()  # label tasks: backends report these labels' first-token logprobs
    model: str = ""  # provider model override; empty = the backend's default
    deadline: float | None = None  # time.monotonic() value
    stop: tuple[str, ...] = ()  # stop sequences: the answer ends before the first, which it does not include
    response_format: ResponseFormat | None = None  # constrain the answer to JSON (and this schema); None = free text
    compact_prompt: bool = False  # providers get the new turn compacted losslessly (gateway/remote/compaction.py)
    tools: tuple[Tool, ...] = ()  # functions the model may call
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token, its log-probability and the alternatives the backend reported."""

    token: str
    logprob: float
    top: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one answer used. `prompt_tokens` counts every prompt token the provider processed; of those,
    `cached_prompt_tokens` were read from its prompt cache and `cache_write_tokens` written to it (billed
    apart: gateway/observe/pricing.py)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A finished answer from one backend or provider."""

    text: str
    provider: str
    model: str
    usage: Usage
    finish_reason: str
    tokens: tuple[TokenLogprob, ...] = ()  # empty when the backend reports no logprobs
    queued_s: float | None = None  # local backends: from taking the call to its first model pass; None = unknown
    tool_calls: tuple[ToolCall, ...] = ()  # the tools the model called (finish_reason "tool_calls")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try at one backend or provider, as reported to the client."""

    provider: str
    model: str
    outcome: str  # ok | error | skipped | cancelled | low_confidence ...
    latency_ms: float
    error: str = ""
    tokens: int = 0  # what this try used (local) or was charged against its provider's budget; 0 = nothing ran


@dataclass(frozen=True, slots=True)
class Delta:
    """A streamed piece of text, or of tool calls; the stream ends with the full Completion."""

    text: str
    tool_calls: tuple[ToolCallDelta, ...] = ()


StreamEvent = Delta | Completion


@dataclass(frozen=True, slots=True)
class Result:
    """The gateway's answer to one request: what was said, by whom, and how it was decided."""

    request_id: str
    text: str
    tier: Tier
    provider: str
    model: str
    confidence: float | None
    escalation: Escalation
    usage: Usage
    attempts: tuple[Attempt, ...]
    finish_reason: str
    latency_ms: float
    task: str = ""
    local_text: str = ""  # the local answer that was escalated ("" when none was produced or it was kept)
    overhead_ms: float = 0.0  # the gateway's own time: total minus the time spent waiting on backends/providers
    request: Request | None = None  # the request as it was decided (access control and policy applied)
    tokens: tuple[TokenLogprob, ...] = ()  # the answering tier's token logprobs; empty when it reports none
    tool_calls: tuple[ToolCall, ...] = ()  # the tools the model called (finish_reason "tool_calls")


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A model, adapter or provider that a client can name (ListModels)."""

    name: str
    tier: Tier
    provider: str
    task: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """A local backend or a commercial provider: one narrow way to get a completion."""

    name: str  # provider name reported to clients: transformers, vllm, openai, ...
    model: str  # default model name

    async def generate(self, call: BackendCall) -> Completion: ...

    def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        """Yield Delta pieces as they are produced, then exactly one Completion."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class LocalBackend(Backend, Protocol):
    """A backend on this box: also reports its load and limits for the capacity policy."""

    context_length: int
    # Capability flags, read with getattr (absent = False): `constrains_json` (core/structured.py) and
    # `supports_tools`, True on a backend that takes tools and tool turns and answers with ToolCalls. No local
    # backend does today, so routing/policy.py sends a request that uses tools to the remote tier.

    def load(self) -> LocalLoad: ...


@dataclass(frozen=True, slots=True)
class LocalLoad:
    """A snapshot of a local backend's load, for the capacity policy.

    The estimates describe a request that would arrive now: how long it would wait
    for its batch to start, that batch's first forward pass (the prompt's prefill),
    and one decode step at that batch's size, all from what the backend has measured.
    """

    in_flight: int  # requests accepted and not finished
    max_in_flight: int
    est_wait_s: float  # estimated queue wait before a new request starts
    est_prefill_s: float = 0.0  # the first forward pass of the batch it would join
    est_step_s: float = 0.0  # one decode step at that batch's size
    measured: bool = True  # False until the backend has timed its first batch: the estimates are guesses
    would_delay: int = 0  # admitted requests a new one would push past their deadlines by joining their batch
    down: str = ""  # why the backend cannot take anything now (its server is not answering); "" when up
    label_steps: int = 0  # the most steps recent label answers took after their prefill; 0 = none seen yet
    saturated: str = ""  # why the server's own signals say it is saturated: only URGENT work goes; "" = not

    def est_finish_s(self, max_tokens: int, *, label: bool = False) -> float:
        """Seconds from now until a request asking for `max_tokens` would have its answer.

        Free text takes one step per token, up to max_tokens (it may stop earlier). A
        label answer takes as many as recent label answers took (`label_steps`: one
        pass when the label is checked at once, more when the model talks past it),
        and max_tokens until one has been seen.
        """
        steps = max(max_tokens, 1)
        if label and self.label_steps:
            steps = min(self.label_steps, steps)
        return self.est_wait_s + self.est_prefill_s + steps * self.est_step_s
