"""The exact-match response cache, as routing sees it: what a key is made of and which answers qualify.

The key is derived from the request's decision (gateway/routing/decision.py),
not from a hand-picked list of request fields: the messages as a tier would be
sent them (the task's system prompt included), the task's labels, calibration
and adapter version, the model pin and sampling parameters, the effective
privacy, the whole plan (where the request may go, the provider order, the rule
that matched, the threshold in force), and a digest of the configuration that
shapes answers beyond the decision (the local tier's settings and model, each
provider's model and endpoint, the free-text confidence quantile). Anything that
changes one of these is a new key, so an answer is found only by a request that
would have been decided the same way: a tag that matched a `local_only` rule, a
raised threshold, a new adapter version or base model never reaches a request
decided otherwise. `tests/unit/test_cache_key_fields.py` fails when a request or
config field is neither in the key nor listed there as irrelevant.

Entries are scoped per caller (the API key's name, or a client certificate's
subject) unless `[cache] shared_across_keys = true`: a hit reveals that the same
prompt was asked within the TTL, which one desk must not learn of another's.
The stores live in gateway/state/cache/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from gateway.config import Config
from gateway.core.contracts import BackendCall, Escalation, Message, Request, ResponseFormat, Result, Tier
from gateway.routing.decision import Decision
from gateway.routing.policy import Plan, should_escalate
from gateway.state.cache.store import CachedAnswer

KEY_VERSION = 5  # 3: stop sequences; 4: response_format; 5: tools and tool turns


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Which requests are looked up, which answers are stored and served, and who shares them."""

    ttl_s: float = 3600.0
    cache_sampled: bool = False  # False: only temperature-0 (deterministic) requests are cached
    shared_across_keys: bool = False  # False: each caller (API key or certificate subject) has its own entries
    context: str = ""  # answer_context(config): the configuration every key is made under

    @staticmethod
    def from_config(config: Config) -> CachePolicy:
        cache = config.cache
        return CachePolicy(
            ttl_s=cache.ttl_s,
            cache_sampled=cache.cache_sampled,
            shared_across_keys=cache.shared_across_keys,
            context=answer_context(config),
        )

    def cacheable(self, request: Request) -> bool:
        """Deterministic requests only (temperature 0), unless cache_sampled."""
        return self.cache_sampled or request.temperature == 0.0

    def lookup_allowed(self, request: Request) -> bool:
        """Not with bypass_cache, nor when the client wants token logprobs: the cache keeps none, so the
        answer comes from a tier (and still refreshes the entry)."""
        return not request.bypass_cache and request.top_logprobs is None and self.cacheable(request)

    def key(self, decision: Decision) -> str:
        return cache_key(decision, scope=self.scope(decision.request), context=self.context)

    def semantic_scope(self, decision: Decision) -> str:
        """The key with the last message's text left out: what a semantic hit must share with the request
        (caller, task, model pin, system prompt, rules, parameters, the earlier turns). It names an index
        of the semantic cache, never an exact entry."""
        call = decision.call
        if not call.messages:
            return self.key(decision)
        blank = dataclasses.replace(call.messages[-1], content="")
        blanked = dataclasses.replace(call, messages=(*call.messages[:-1], blank))
        return self.key(dataclasses.replace(decision, call=blanked))

    def scope(self, request: Request) -> str:
        """Whose entries a request reads and writes: its caller's, or everyone's when shared."""
        return "" if self.shared_across_keys else request.client

    def store_allowed(self, decision: Decision, result: Result) -> bool:
        """bypass_cache skips the lookup but still refreshes the entry with the fresh answer."""
        if not self.cacheable(decision.request) or result.tier is Tier.CACHE or result.tool_calls:
            return False  # the cache keeps text: an answer that calls tools is asked again
        if result.tier is Tier.LOCAL:
            # A local answer kept only because escalation failed or was not allowed is not the answer to remember.
            return result.escalation is Escalation.NONE and _meets(result.confidence, decision.plan)
        return decision.plan.remote_allowed

    def servable(self, decision: Decision, hit: CachedAnswer) -> bool:
        """Whether this request could have produced the cached answer under its own decision, now:
        a provider's answer only when it may leave the box, a local one only when it tries the local tier
        and the answer meets the threshold in force (raised by the audit since, perhaps)."""
        if hit.tier == Tier.REMOTE.value:
            return decision.plan.remote_allowed
        return decision.plan.try_local and _meets(hit.confidence, decision.plan)


def _meets(confidence: float | None, plan: Plan) -> bool:
    return not should_escalate(confidence, plan.threshold)


def cache_key(decision: Decision, *, scope: str, context: str) -> str:
    """A stable hex digest of the decision (a JSON array in a fixed order, then SHA-256)."""
    request, task, call = decision.request, decision.task, decision.call
    normalised = [
        KEY_VERSION,
        scope,
        context,
        [_message(m) for m in call.messages],
        request.task,
        list(task.labels),
        task.system_prompt,
        _number(task.calibration_temperature),
        [call.adapter.name, call.adapter.version] if call.adapter is not None else None,
        request.model,
        _number(call.temperature),
        call.max_tokens,
        list(call.stop),
        _response_format(call.response_format),
        _tools(call),
        request.privacy.value,
        _plan(decision.plan),
    ]
    blob = json.dumps(normalised, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def answer_context(config: Config) -> str:
    """A digest of the configuration that shapes answers beyond any one decision.

    The local tier's settings (its backend and model; batching and quantisation can change
    the numbers it produces), each enabled provider's model, endpoint and wire format, and the
    quantile that turns free-text logprobs into a confidence.
    """
    providers = {
        name: [p.model, p.base_url, p.kind or name] for name, p in sorted(config.providers.items()) if p.enabled
    }
    context = [
        config.local.model_dump(mode="json"),
        providers,
        _number(config.routing.confidence_quantile),
    ]
    blob = json.dumps(context, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _plan(plan: Plan) -> list[Any]:
    return [
        plan.try_local,
        plan.remote_allowed,
        list(plan.order),
        plan.rule_escalation,
        plan.pinned_remote,
        plan.remote_model,
        plan.urgent,
        _number(plan.threshold),
        plan.hedge,
        plan.rule.model_dump(mode="json") if plan.rule is not None else None,
        plan.keep_local,
        plan.tools_remote,
    ]


def _response_format(fmt: ResponseFormat | None) -> list[Any] | None:
    """The answer's shape: its schema's canonical text and strictness (the name is only a label)."""
    return None if fmt is None else [fmt.schema, fmt.strict]


def _message(message: Message) -> list[Any]:
    """A turn as the key holds it: role and content, and a tool turn's calls or the call it answers."""
    if not message.tool_calls and not message.tool_call_id and not message.name:
        return [message.role.value, message.content]
    calls = [[c.id, c.name, c.arguments] for c in message.tool_calls]
    return [message.role.value, message.content, calls, message.tool_call_id, message.name]


def _tools(call: BackendCall) -> list[Any] | None:
    """The tools offered, the choice and parallel_tool_calls: a text answer to a request with tools is kept
    under them (an answer that calls tools is never stored: store_allowed)."""
    if not call.tools and call.tool_choice is None and call.parallel_tool_calls is None:
        return None
    choice = None if call.tool_choice is None else [call.tool_choice.mode, call.tool_choice.name]
    offered = [[t.name, t.description, t.parameters, t.strict] for t in call.tools]
    return [offered, choice, call.parallel_tool_calls]


def _number(value: float) -> float:
    return round(float(value), 6)


def answer_from_result(result: Result, now: float) -> CachedAnswer:
    return CachedAnswer(
        text=result.text,
        provider=result.provider,
        model=result.model,
        tier=result.tier.value,
        usage=result.usage,
        finish_reason=result.finish_reason,
        confidence=result.confidence,
        created_at=now,
    )
