"""Every request and config field is either in the response cache's key or listed here as irrelevant.

The key is derived from the router's decision (gateway/routing/cache_policy.py).
These tests build that decision the way the server does, change one field at a
time, and check the key: a field in the key must change it, a field listed as
irrelevant must not. A field added to `Request` or to the config fails here until
someone decides which it is (and, for the key, makes it reach the decision).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.config import Config
from gateway.core.contracts import (
    Message,
    ModelEntry,
    Priority,
    Privacy,
    Request,
    ResponseFormat,
    Role,
    Tool,
    ToolChoice,
)
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from local_models.echo import EchoBackend

# The request is URGENT, tagged to match a rule that prefers a provider, for a task with labels and a system
# prompt at the routing default threshold: so each routing, rule, task and provider field has something to change.
BASE: dict[str, Any] = {
    "local": {"backend": "echo"},
    "routing": {
        "escalation_order": ["openai", "anthropic", "google"],
        "rules": [{"match_tag": {"desk": "a"}, "prefer": ["anthropic"]}],
    },
    "tasks": {"trend": {"labels": ["up", "down"], "system_prompt": "Answer up or down."}},
    "providers": {
        "openai": {"model": "gpt-test", "base_url": "http://127.0.0.1:9/v1"},
        "anthropic": {"model": "claude-test"},
        "google": {"model": "gemini-test"},
    },
}
REQUEST = Request(
    "r1",
    (Message(Role.USER, "Closes rose 10 days. Trend?"),),
    8,
    task="trend",
    priority=Priority.URGENT,
    tags={"desk": "a"},
    client="desk-1",
)

# -- the request -------------------------------------------------------------------------------------------

REQUEST_IN_KEY: dict[str, Any] = {  # a changed value that changes the decision, or the key's scope
    "messages": (Message(Role.USER, "Closes fell 10 days. Trend?"),),
    "max_tokens": 9,
    "temperature": 0.5,
    "task": "",
    "model": "openai/gpt-pinned",
    "priority": Priority.NORMAL,  # URGENT reorders providers by latency and may hedge
    "privacy": Privacy.LOCAL_ONLY,
    "min_confidence": 0.9,  # the threshold in force
    "tags": {"desk": "b"},  # through the rule they match (a tag no rule reads leaves the key alone: below)
    "client": "desk-2",  # entries are per caller unless [cache] shared_across_keys
    "stop": ("\n",),  # where the answer ends
    "response_format": ResponseFormat('{"type":"object"}'),  # the shape the answer must have
    # tools: part of the key (a text answer is kept under them; one that calls tools is never stored)
    "tools": (Tool("quote", "A price.", '{"type":"object"}'),),
    "tool_choice": ToolChoice("none"),
    "parallel_tool_calls": False,
}
REQUEST_NOT_IN_KEY: dict[str, tuple[Any, str]] = {
    "request_id": ("r2", "names the call, not the question"),
    "bypass_cache": (True, "whether to look up, not what the answer is"),
    "semantic_cache": (True, "whether paraphrases are looked up too, not what the answer is"),
    "top_logprobs": (3, "what is reported beside the answer; a request asking for it is not looked up"),
    "deadline": (123.0, "how long the caller waits; every tier the plan allows may answer it"),
    "traceparent": ("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "trace context"),
    "tracestate": ("vendor=1", "trace context"),
}

# -- the config --------------------------------------------------------------------------------------------

CONFIG_IN_KEY = frozenset(
    {
        "offline",
        "routing.escalation_order",
        "routing.default_min_confidence",
        "routing.confidence_quantile",
        "routing.urgent",
        "routing.hedge",
        "routing.rules.*.match_task",
        "routing.rules.*.match_tag",
        "routing.rules.*.prefer",
        "routing.rules.*.escalate",
        "routing.rules.*.local_only",
        "routing.rules.*.match_tools",
        "tasks.*.labels",
        "tasks.*.min_confidence",
        "tasks.*.system_prompt",
        "providers.*.enabled",
        "providers.*.model",
        "providers.*.base_url",
        "providers.*.kind",
        "cache.shared_across_keys",
    }
)
CONFIG_IN_KEY_UNDER = ("local.",)  # every setting of the local tier: its model, and how it computes

_TRANSPORT = "how callers reach the gateway, not what it answers"
_STORE = "where state is kept"
_COUNTING = "what is counted, recorded or shown about answers"
_LIMITS = "how much may be spent or waited, not which answer a tier gives"
_HEALTH = "which allowed provider is healthy now, not which may answer"
_LEARNING = "captures rows and audits answers; a threshold the audit raises is in the key as the threshold in force"
CONFIG_NOT_IN_KEY: dict[str, str] = {
    "cache_dir": "where the local model's files are kept",
    "state_dir": _STORE,
    **{
        f"server.{name}": _TRANSPORT
        for name in (
            "host",
            "port",
            "http_host",
            "http_port",
            "max_request_bytes",
            "max_batch_items",
            "drain_timeout_s",
            "max_concurrent_rpcs",
            "max_concurrent_streams",
            "log_level",
            "allow_insecure",
            "probe_host",
            "probe_port",
        )
    },
    "server.default_max_tokens": "the doors fill in max_tokens, and the request's value is in the key",
    "server.log_prompts": _COUNTING,
    **{f"server.tls.{name}": _TRANSPORT for name in ("cert_file", "key_file", "client_ca_file", "require_client_cert")},
    "routing.hedge_after_ms": "when a hedge starts, not whether the request may be hedged",
    "routing.hedge_min_ms": "when a hedge starts, not whether the request may be hedged",
    "routing.breaker_failures": _HEALTH,
    "routing.breaker_window_s": _HEALTH,
    "routing.breaker_cooldown_s": _HEALTH,
    **{
        f"admission.{name}": "whether and when a tier takes the request, not which answer it gives"
        for name in (
            "urgent_share",
            "bulk_share",
            "queue_factor",
            "min_queue",
            "local_initial",
            "local_max",
            "provider_initial",
            "provider_max",
            "tolerance",
            "door_initial",
            "door_max",
            "key_classes",
        )
    },
    "tasks.*.learn": _LEARNING,
    "tasks.*.semantic_cache": "whether paraphrases are looked up too; the exact key is unchanged",
    "tasks.*.compact_prompt": "lossless clean-up: the provider reads the same content in fewer tokens",
    "adapters.dir": "where adapter cards are read; the adapter's name and version are in the key",
    "adapters.watch_s": "how often adapter cards are read; the adapter's name and version are in the key",
    "adapters.check_base": "refuses adapters of another base model; the served adapter is in the key",
    "providers.*.api_key_env": "the credential, not the model",
    "providers.*.daily_token_budget": _LIMITS,
    "providers.*.requests_per_minute": _LIMITS,
    "providers.*.timeout_s": _LIMITS,
    "providers.*.max_retries": _LIMITS,
    "providers.*.price_in_per_mtok": _COUNTING,
    "providers.*.price_out_per_mtok": _COUNTING,
    "providers.*.top_logprobs": "alternatives a provider reports, not its answer",
    "providers.*.prompt_cache": "the provider caches the prompt's prefix: the same prompt, billed less",
    "providers.*.prompt_cache_min_chars": "the provider caches the prompt's prefix: the same prompt, billed less",
    "providers.*.cached_in_ratio": _COUNTING,
    "providers.*.cache_write_ratio": _COUNTING,
    "providers.*.budget_cached_weight": _LIMITS,
    "routing.stream_continue": "what happens when a provider's stream breaks, not what a whole answer is",
    "routing.stream_chunk_timeout_s": "what happens when a provider's stream breaks, not what a whole answer is",
    "models.aliases": "resolved to its target in the decision, and the target is in the key",
    "budget.path": _STORE,
    "budget.chars_per_token": _LIMITS,
    "budget.reservation_expiry_s": _LIMITS,
    "state.backend": _STORE,
    "state.url": _STORE,
    "state.key_prefix": _STORE,
    "cache.enabled": "whether there is a cache at all",
    "cache.ttl_s": "how long an entry lives",
    "cache.max_entries": _STORE,
    "cache.memory_entries": _STORE,
    "cache.cache_sampled": "whether sampled requests are cached; their temperature is in the key",
    "cache.path": _STORE,
    "cache.semantic.enabled": "whether paraphrases are looked up too; the exact key is unchanged",
    "cache.semantic.threshold": "which paraphrases qualify; the exact key is unchanged",
    "cache.semantic.max_entries": _STORE,
    "cache.semantic.candidates": "which paraphrases qualify; the exact key is unchanged",
    **{
        f"embeddings.{name}": "the embedding model, which answers no generation"
        for name in ("enabled", "model_dir", "threads", "max_batch")
    },
    "usage.retention_days": _COUNTING,
    "usage.path": _STORE,
    "usage.reference_provider": _COUNTING,
    "usage.record_prompts": _COUNTING,
    "usage.prices.*.in_per_mtok": _COUNTING,
    "usage.prices.*.out_per_mtok": _COUNTING,
    **{
        f"learning.{name}": _LEARNING
        for name in (
            "enabled",
            "path",
            "max_rows",
            "max_age_days",
            "audit_rate",
            "audit_budget_share",
            "target_accuracy",
            "on_low_accuracy",
            "min_audits",
            "audit_window_days",
            "threshold_step",
            "max_threshold",
        )
    },
    "dashboard.enabled": _COUNTING,
    "dashboard.refresh_s": _COUNTING,
    "dashboard.recent": _COUNTING,
    "keys.path": _STORE,
    "keys.refresh_s": "how soon a revoke counts",
    **{
        f"tracing.{name}": _COUNTING
        for name in (
            "enabled",
            "endpoint",
            "protocol",
            "service_name",
            "sample_ratio",
            "headers_env",
            "timeout_s",
        )
    },
}
PERTURB: dict[str, Any] = {  # values the generic change would not make valid or telling
    "routing.rules.*.prefer": ["google"],
    "routing.rules.*.match_tools": True,  # the request uses no tools: the rule stops matching it
    "routing.escalation_order": ["google", "openai", "anthropic"],
    "admission.key_classes": {"desk": "urgent"},
}


@dataclasses.dataclass
class Providers:
    """The remote tier as the router sees it: the enabled providers (no calls are made here)."""

    names: tuple[str, ...]

    def providers(self) -> tuple[str, ...]:
        return self.names

    def models(self) -> list[ModelEntry]:
        return []


def key(config_data: dict[str, Any], request: Request = REQUEST) -> str:
    """The key the server would use for `request` under this config."""
    config = Config.model_validate(config_data)
    tasks = ChainedTasks(ConfigTasks(config.tasks))
    remote = Providers(tuple(name for name, p in config.providers.items() if p.enabled))
    router = Router(EchoBackend(), tasks, config.routing, remote=remote, offline=config.offline)  # type: ignore[arg-type]
    return CachePolicy.from_config(config).key(router.decide(request))


# -- what the tests walk -------------------------------------------------------------------------------------


def config_fields(model: type[BaseModel] = Config, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """Every leaf field of the config, as a dotted path (`*` for an entry of a table or list of tables)."""
    for name, info in model.model_fields.items():
        annotation, args = info.annotation, typing.get_args(info.annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from config_fields(annotation, f"{prefix}{name}.")
        elif origin is dict and _is_model(args[1]):
            yield from config_fields(args[1], f"{prefix}{name}.*.")
        elif origin is tuple and _is_model(args[0]):
            yield from config_fields(args[0], f"{prefix}{name}.*.")
        else:
            yield f"{prefix}{name}", info


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def with_changed(path: str, info: FieldInfo) -> dict[str, Any]:
    """BASE (as the config dumps it) with the field at `path` changed to another valid value."""
    data = Config.model_validate(BASE).model_dump(mode="json")
    *parents, leaf = path.split(".")
    node: Any = data
    for part in parents:
        if part == "*":
            # the first entry BASE has, else a new one
            node = node[0] if isinstance(node, list) else node.setdefault(next(iter(node), "openai"), {})
        else:
            node = node[part]
    node[leaf] = PERTURB[path] if path in PERTURB else _other(node.get(leaf, info.default), info)
    return data


def _other(value: Any, info: FieldInfo) -> Any:
    literal = [a for a in typing.get_args(info.annotation) if a is not type(None)]
    if typing.get_origin(info.annotation) is Literal:
        return next(choice for choice in literal if choice != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value - 1 if value > 1 else value + 1
    if isinstance(value, float):
        return round(value * 0.5 + 0.01, 6) if 0 <= value <= 1 else value + 1
    if value is None:
        return 1 if int in literal else "x" if str in literal else 0.5
    if isinstance(value, str):
        return value + "-changed"
    if isinstance(value, list):
        return list(reversed(value)) if len(value) > 1 else [*value, "changed"]
    if isinstance(value, dict):
        return {**value, "changed": "yes"}
    raise AssertionError(f"no way to change {value!r}; add it to PERTURB")


# -- the tests -----------------------------------------------------------------------------------------------


def test_every_request_field_is_in_the_key_or_listed_as_irrelevant() -> None:
    fields = {f.name for f in dataclasses.fields(Request)}
    undecided = fields - set(REQUEST_IN_KEY) - set(REQUEST_NOT_IN_KEY)
    assert not undecided, f"Request fields neither in the cache key nor listed as irrelevant: {sorted(undecided)}"
    assert not set(REQUEST_IN_KEY) & set(REQUEST_NOT_IN_KEY)


@pytest.mark.parametrize("name", sorted(REQUEST_IN_KEY))
def test_a_request_field_in_the_key_changes_it(name: str) -> None:
    assert key(BASE) != key(BASE, dataclasses.replace(REQUEST, **{name: REQUEST_IN_KEY[name]}))


@pytest.mark.parametrize("name", sorted(REQUEST_NOT_IN_KEY))
def test_an_irrelevant_request_field_leaves_the_key_alone(name: str) -> None:
    assert key(BASE) == key(BASE, dataclasses.replace(REQUEST, **{name: REQUEST_NOT_IN_KEY[name][0]}))


def test_a_tag_no_rule_reads_leaves_the_key_alone() -> None:
    assert key(BASE) == key(BASE, dataclasses.replace(REQUEST, tags={"desk": "a", "learn": "false"}))


def test_every_config_field_is_in_the_key_or_listed_as_irrelevant() -> None:
    paths = {path for path, _ in config_fields()}
    keyed = {p for p in paths if p in CONFIG_IN_KEY or p.startswith(CONFIG_IN_KEY_UNDER)}
    undecided = paths - keyed - set(CONFIG_NOT_IN_KEY)
    assert not undecided, f"config fields neither in the cache key nor listed as irrelevant: {sorted(undecided)}"
    assert not keyed & set(CONFIG_NOT_IN_KEY)
    gone = (CONFIG_IN_KEY | set(CONFIG_NOT_IN_KEY)) - paths
    assert not gone, f"listed here but no longer in the config: {sorted(gone)}"


@pytest.mark.parametrize("path", sorted(p for p, _ in config_fields() if p not in CONFIG_NOT_IN_KEY))
def test_a_config_field_in_the_key_changes_it(path: str) -> None:
    info = dict(config_fields())[path]
    assert key(BASE) != key(with_changed(path, info)), f"{path} is listed in the key but does not change it"


@pytest.mark.parametrize("path", sorted(CONFIG_NOT_IN_KEY))
def test_an_irrelevant_config_field_leaves_the_key_alone(path: str) -> None:
    info = dict(config_fields())[path]
    assert key(BASE) == key(with_changed(path, info)), f"{path} is listed as irrelevant but changes the key"
