"""Escalation policy: the one owner of where a request may go, and of whether a local answer stands.

`plan()` decides, before anything runs, which tiers a request may use and in
what order: local-only (privacy, `offline`, a rule's `local_only`), a pinned
local or remote model, a rule that escalates straight away, the provider order,
and whether an URGENT request's local attempt may be raced by a provider (a
hedge: only when the request may leave the box at all).
A request whose pin contradicts those rules is refused here with the reason.
`should_escalate()` decides, after the local answer, whether its confidence is
enough. Both return frozen values and touch nothing else; the router executes
the plan without re-deriving any of it. `effective()` is the request as the plan
treats it (LOCAL_ONLY when it may not leave the box, whatever made it so): the
value every layer and observer below the decision sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gateway.config import RoutingConfig, RuleConfig
from gateway.core.contracts import Priority, Privacy, Request, TaskSpec
from gateway.core.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Plan:
    try_local: bool  # attempt the local tier first
    remote_allowed: bool  # may leave the box at all
    order: tuple[str, ...]  # providers to try, in order (empty when remote is not allowed)
    rule_escalation: bool  # a rule sends the request straight to the remote tier
    pinned_remote: bool  # the request names `provider/model`: straight to that provider
    remote_model: str  # the model asked of the provider ("" = the provider's configured model)
    urgent: bool  # reorder providers by observed latency
    threshold: float  # minimum local confidence
    hedge: bool = False  # race the fastest provider against a slow local answer (URGENT, may leave the box)
    rule: RuleConfig | None = None  # the rule that matched the request (None: none did)
    keep_local: str = ""  # why the request may not leave the box ("" when it may)
    tools_remote: bool = False  # it uses tools the local backend does not support: straight to the remote tier


def match_rule(rules: Sequence[RuleConfig], request: Request) -> RuleConfig | None:
    """The first rule whose conditions all hold."""
    for rule in rules:
        if rule.match_task is not None and rule.match_task != request.task:
            continue
        if any(request.tags.get(key) != value for key, value in rule.match_tag.items()):
            continue
        if rule.match_tools is not None and rule.match_tools != request.uses_tools():
            continue
        return rule
    return None


def threshold_for(request: Request, task: TaskSpec, routing: RoutingConfig) -> float:
    """Request override, else the task's calibrated threshold, else the routing default."""
    if request.min_confidence is not None:
        return request.min_confidence
    if task.threshold is not None:
        return task.threshold
    return routing.default_min_confidence


def plan(
    request: Request,
    task: TaskSpec,
    routing: RoutingConfig,
    *,
    offline: bool,
    providers: tuple[str, ...],
    local_models: frozenset[str],
    aliases: tuple[str, ...] = (),
    local_tools: bool = False,
) -> Plan:
    """Which tiers this request may use.

    `providers`: the enabled remote providers, in no particular order.
    `local_models`: what a client may pin locally (the served model and its adapters).
    `aliases`: the `[models] aliases` names (already resolved in `request`), listed in the error for an unknown model.
    `local_tools`: the local backend takes tools (`supports_tools`); else a request that uses tools skips it.
    Raises InvalidArgument for a pin that names nothing known or that the rules forbid, and for a request that
    uses tools where no tier that supports them may take it.
    """
    rule = match_rule(routing.rules, request)
    local_only = _local_only_reason(request, rule, offline=offline)
    pinned_provider, remote_model = _check_pin(request.model, providers, local_models, local_only, aliases)
    if pinned_provider:
        order: tuple[str, ...] = (pinned_provider,)
    else:
        preferred = tuple(p for p in (rule.prefer if rule else ()) if p in providers)
        rest = tuple(p for p in routing.escalation_order if p in providers and p not in preferred)
        order = preferred + rest + tuple(p for p in providers if p not in preferred + rest)
    remote_allowed = not local_only and bool(order)
    rule_escalation = remote_allowed and rule is not None and rule.escalate and not pinned_provider
    tools_remote = request.uses_tools() and not local_tools
    if tools_remote:
        _check_tools_may_leave(request, local_only, remote_allowed, pinned_provider)
    try_local = not pinned_provider and not rule_escalation and not tools_remote
    urgent = request.priority is Priority.URGENT and routing.urgent == "fastest"
    return Plan(
        try_local=try_local,
        remote_allowed=remote_allowed,
        order=order if remote_allowed else (),
        rule_escalation=rule_escalation,
        pinned_remote=bool(pinned_provider),
        remote_model=remote_model,
        urgent=urgent,
        threshold=threshold_for(request, task, routing),
        hedge=urgent and routing.hedge and try_local and remote_allowed,
        rule=rule,
        keep_local=local_only,
        tools_remote=tools_remote and not pinned_provider and not rule_escalation,
    )


def effective(request: Request, the_plan: Plan) -> Request:
    """The request as `the_plan` treats it: LOCAL_ONLY when it may not leave the box (privacy, a key,
    `offline` or a rule), so every consumer downstream reads the same answer to "may this go out?"."""
    if the_plan.keep_local and request.privacy is not Privacy.LOCAL_ONLY:
        return replace(request, privacy=Privacy.LOCAL_ONLY)
    return request


def should_escalate(confidence: float | None, threshold: float) -> bool:
    """Low confidence escalates; an answer without logprobs cannot be judged, so it stands."""
    return confidence is not None and confidence < threshold


def _local_only_reason(request: Request, rule: RuleConfig | None, *, offline: bool) -> str:
    """Why this request may not leave the box ("" when it may)."""
    if offline:
        return "offline = true"
    if request.privacy is Privacy.LOCAL_ONLY:
        return "privacy = PRIVACY_LOCAL_ONLY"
    if rule is not None and rule.local_only:
        return "a routing rule with local_only = true matches it"
    return ""


def _check_tools_may_leave(request: Request, local_only: str, remote_allowed: bool, pinned_provider: str) -> None:
    """A request that uses tools the local backend cannot take must be allowed to the remote tier."""
    if pinned_provider:
        return
    what = "tools" if request.tools else "messages"
    local = "the local backend does not support tools"
    if request.model:
        raise InvalidArgument(
            f"{what}: model '{request.model}' is a local pin and {local}; drop the pin (or pin a provider, "
            "'provider/model') or drop the tools and tool turns"
        )
    if local_only:
        raise InvalidArgument(
            f"{what}: {local} and the request is local-only ({local_only}); drop the tools and tool turns, "
            "or let the request leave the box"
        )
    if not remote_allowed:
        raise InvalidArgument(f"{what}: {local} and no remote provider is enabled; drop the tools or enable a provider")


def _check_pin(
    model: str, providers: tuple[str, ...], local_models: frozenset[str], local_only: str, aliases: tuple[str, ...]
) -> tuple[str, str]:
    """(pinned provider, model at that provider) for `provider/model`; ("", "") for a local pin or none."""
    if not model:
        return "", ""
    if "/" not in model:
        if model not in local_models:
            known = sorted(local_models) + [f"{p}/<model>" for p in providers] + [f"{a} (alias)" for a in aliases]
            raise InvalidArgument(f"model: unknown model '{model}'; known: {', '.join(known)}")
        return "", ""
    provider, _, remote_model = model.partition("/")
    if provider not in providers:
        raise InvalidArgument(
            f"model: provider '{provider}' is not enabled; enabled providers: "
            f"{', '.join(providers) or '(none: local only)'}"
        )
    if local_only:
        raise InvalidArgument(
            f"model: '{model}' is remote but the request is local-only ({local_only}); "
            "drop the pin or pin a local model"
        )
    return provider, remote_model
