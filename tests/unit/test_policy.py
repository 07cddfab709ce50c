from __future__ import annotations

from gateway.config import RoutingConfig, RuleConfig
from gateway.core.contracts import LocalLoad, Message, Priority, Privacy, Request, Role, TaskSpec
from gateway.routing.capacity import check_capacity
from gateway.routing.policy import match_rule, plan, should_escalate, threshold_for

PROVIDERS = ("openai", "anthropic", "google")


def req(**fields: object) -> Request:
    return Request("r", (Message(Role.USER, "hi"),), 8, **fields)  # type: ignore[arg-type]


def test_local_first_with_escalation_order_filtered_to_enabled_providers() -> None:
    p = plan(req(), TaskSpec(""), RoutingConfig(), offline=False, providers=PROVIDERS)
    assert p.try_local and p.remote_allowed and not p.rule_escalation
    assert p.order == ("anthropic", "openai", "google")


def test_local_only_and_offline_never_allow_remote() -> None:
    for request, offline in ((req(privacy=Privacy.LOCAL_ONLY), False), (req(), True)):
        p = plan(request, TaskSpec(""), RoutingConfig(), offline=offline, providers=PROVIDERS)
        assert p.try_local and not p.remote_allowed and p.order == ()


def test_first_matching_rule_wins_and_can_escalate_or_pin_local() -> None:
    routing = RoutingConfig(
        rules=(
            RuleConfig(match_task="detailed_analysis", prefer=("google",), escalate=True),
            RuleConfig(match_tag={"desk": "private"}, local_only=True),
            RuleConfig(match_task="detailed_analysis", local_only=True),
        )
    )
    p = plan(req(task="detailed_analysis"), TaskSpec("detailed_analysis"), routing, offline=False, providers=PROVIDERS)
    assert p.rule_escalation and not p.try_local and p.order[0] == "google"
    private = req(tags={"desk": "private"})
    assert match_rule(routing.rules, private) is routing.rules[1]
    assert not plan(private, TaskSpec(""), routing, offline=False, providers=PROVIDERS).remote_allowed


def test_pinned_provider_skips_local_and_urgent_is_flagged() -> None:
    p = plan(
        req(model="openai/gpt-4o-mini", priority=Priority.URGENT),
        TaskSpec(""),
        RoutingConfig(),
        offline=False,
        providers=PROVIDERS,
    )
    assert not p.try_local and p.order == ("openai",) and p.urgent and not p.rule_escalation


def test_threshold_precedence_and_escalation_predicate() -> None:
    routing = RoutingConfig(default_min_confidence=0.6)
    assert threshold_for(req(min_confidence=0.9), TaskSpec("t", threshold=0.7), routing) == 0.9
    assert threshold_for(req(), TaskSpec("t", threshold=0.7), routing) == 0.7
    assert threshold_for(req(), TaskSpec("t"), routing) == 0.6
    assert should_escalate(0.5, 0.6) and not should_escalate(0.6, 0.6) and not should_escalate(None, 0.6)


def test_capacity_checks_in_flight_and_queue_wait_against_deadline() -> None:
    assert not check_capacity(LocalLoad(4, 4, 0.0), None).ok
    assert not check_capacity(LocalLoad(1, 4, 2.0), remaining_s=1.0).ok
    assert check_capacity(LocalLoad(1, 4, 0.5), remaining_s=1.0).ok
    assert check_capacity(LocalLoad(1, 4, 9.0), remaining_s=None).ok
