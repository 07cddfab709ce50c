"""Escalation policy: data (the rule table from config) and two small predicates.

`plan()` decides, before anything runs, which tiers a request may use and in
what order; `should_escalate()` decides, after the local answer, whether its
confidence is enough. Both return frozen values and touch nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config import RoutingConfig, RuleConfig
from gateway.core.contracts import Priority, Privacy, Request, TaskSpec


@dataclass(frozen=True, slots=True)
class Plan:
    try_local: bool  # attempt the local tier first
    remote_allowed: bool  # may leave the box at all
    order: tuple[str, ...]  # providers to try, in order
    rule_escalation: bool  # a rule sends the request straight to the remote tier
    urgent: bool  # reorder providers by observed latency
    threshold: float  # minimum local confidence


def match_rule(rules: Sequence[RuleConfig], request: Request) -> RuleConfig | None:
    """The first rule whose conditions all hold."""
    for rule in rules:
        if rule.match_task is not None and rule.match_task != request.task:
            continue
        if any(request.tags.get(key) != value for key, value in rule.match_tag.items()):
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
) -> Plan:
    """Which tiers this request may use. `providers`: the enabled remote providers."""
    rule = match_rule(routing.rules, request)
    local_only = offline or request.privacy is Privacy.LOCAL_ONLY or bool(rule and rule.local_only)
    pinned_provider, _, _ = request.model.partition("/") if "/" in request.model else ("", "", "")
    if pinned_provider:
        order: tuple[str, ...] = (pinned_provider,)
    else:
        preferred = tuple(p for p in (rule.prefer if rule else ()) if p in providers)
        rest = tuple(p for p in routing.escalation_order if p in providers and p not in preferred)
        order = preferred + rest + tuple(p for p in providers if p not in preferred + rest)
    remote_allowed = not local_only and bool(order)
    return Plan(
        try_local=not pinned_provider and not (remote_allowed and rule is not None and rule.escalate),
        remote_allowed=remote_allowed,
        order=order if remote_allowed else (),
        rule_escalation=remote_allowed and rule is not None and rule.escalate and not pinned_provider,
        urgent=request.priority is Priority.URGENT and routing.urgent == "fastest",
        threshold=threshold_for(request, task, routing),
    )


def should_escalate(confidence: float | None, threshold: float) -> bool:
    """Low confidence escalates; an answer without logprobs cannot be judged, so it stands."""
    return confidence is not None and confidence < threshold
