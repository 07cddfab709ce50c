from __future__ import annotations

import pytest

from gateway.config import RoutingConfig, RuleConfig
from gateway.core.contracts import LocalLoad, Message, Priority, Privacy, Request, Role, TaskSpec
from gateway.core.errors import InvalidArgument
from gateway.routing.capacity import check_capacity
from gateway.routing.policy import match_rule, plan, should_escalate, threshold_for

PROVIDERS = ("openai", "anthropic", "google")
LOCAL = frozenset({"smollm2", "trend-adapter"})


def req(**fields: object) -> Request:
    return Request("r", (Message(Role.USER, "hi"),), 8, **fields)  # type: ignore[arg-type]


def test_local_first_with_escalation_order_filtered_to_enabled_providers() -> None:
    p = plan(req(), TaskSpec(""), RoutingConfig(), offline=False, providers=PROVIDERS, local_models=LOCAL)
    assert p.try_local and p.remote_allowed and not p.rule_escalation
    assert p.order == ("anthropic", "openai", "google")


def test_local_only_and_offline_never_allow_remote() -> None:
    for request, offline in ((req(privacy=Privacy.LOCAL_ONLY), False), (req(), True)):
        p = plan(request, TaskSpec(""), RoutingConfig(), offline=offline, providers=PROVIDERS, local_models=LOCAL)
        assert p.try_local and not p.remote_allowed and p.order == ()


def test_first_matching_rule_wins_and_can_escalate_or_pin_local() -> None:
    routing = RoutingConfig(
        rules=(
            RuleConfig(match_task="detailed_analysis", prefer=("google",), escalate=True),
            RuleConfig(match_tag={"desk": "private"}, local_only=True),
            RuleConfig(match_task="detailed_analysis", local_only=True),
        )
    )
    p = plan(
        req(task="detailed_analysis"),
        TaskSpec("detailed_analysis"),
        routing,
        offline=False,
        providers=PROVIDERS,
        local_models=LOCAL,
    )
    assert p.rule_escalation and not p.try_local and p.order[0] == "google"
    private = req(tags={"desk": "private"})
    assert match_rule(routing.rules, private) is routing.rules[1]
    assert not plan(
        private, TaskSpec(""), routing, offline=False, providers=PROVIDERS, local_models=LOCAL
    ).remote_allowed


def test_pinned_provider_skips_local_and_urgent_is_flagged() -> None:
    p = plan(
        req(model="openai/gpt-4o-mini", priority=Priority.URGENT),
        TaskSpec(""),
        RoutingConfig(),
        offline=False,
        providers=PROVIDERS,
        local_models=LOCAL,
    )
    assert not p.try_local and p.order == ("openai",) and p.urgent and not p.rule_escalation


def test_only_urgent_requests_that_may_leave_the_box_and_start_locally_are_hedged() -> None:
    urgent = Priority.URGENT
    routing = RoutingConfig(rules=(RuleConfig(match_tag={"desk": "private"}, local_only=True),))

    def hedged(request: Request, offline: bool = False, config: RoutingConfig = routing) -> bool:
        return plan(request, TaskSpec(""), config, offline=offline, providers=PROVIDERS, local_models=LOCAL).hedge

    assert hedged(req(priority=urgent))
    assert not hedged(req())  # normal priority
    assert not hedged(req(priority=urgent, privacy=Privacy.LOCAL_ONLY))
    assert not hedged(req(priority=urgent), offline=True)
    assert not hedged(req(priority=urgent, tags={"desk": "private"}))  # a local_only rule
    assert not hedged(req(priority=urgent, model="openai/gpt-4o-mini"))  # pinned: no local attempt to race
    assert not hedged(req(priority=urgent), config=RoutingConfig(hedge=False))
    assert not hedged(req(priority=urgent), config=RoutingConfig(urgent="local"))
    no_providers = plan(req(priority=urgent), TaskSpec(""), routing, offline=False, providers=(), local_models=LOCAL)
    assert not no_providers.hedge


def test_the_plan_carries_the_pin_so_the_router_does_not_parse_it() -> None:
    p = plan(
        req(model="openai/gpt-4o-mini"),
        TaskSpec(""),
        RoutingConfig(),
        offline=False,
        providers=PROVIDERS,
        local_models=LOCAL,
    )
    assert p.pinned_remote and p.remote_model == "gpt-4o-mini" and p.order == ("openai",)
    local = plan(
        req(model="trend-adapter"),
        TaskSpec(""),
        RoutingConfig(),
        offline=False,
        providers=PROVIDERS,
        local_models=LOCAL,
    )
    assert local.try_local and not local.pinned_remote and local.remote_model == ""


@pytest.mark.parametrize(
    ("request_fields", "rules", "offline", "reason"),
    [
        ({"privacy": Privacy.LOCAL_ONLY}, (), False, "privacy = PRIVACY_LOCAL_ONLY"),
        ({}, (), True, "offline = true"),
        (
            {"tags": {"desk": "private"}},
            (RuleConfig(match_tag={"desk": "private"}, local_only=True),),
            False,
            "local_only = true",
        ),
    ],
)
def test_a_remote_pin_on_a_local_only_request_is_refused_with_the_reason(
    request_fields: dict[str, object], rules: tuple[RuleConfig, ...], offline: bool, reason: str
) -> None:
    request = req(model="openai/gpt-4o-mini", **request_fields)
    with pytest.raises(InvalidArgument, match="is remote but the request is local-only") as raised:
        plan(
            request, TaskSpec(""), RoutingConfig(rules=rules), offline=offline, providers=PROVIDERS, local_models=LOCAL
        )
    assert reason in raised.value.message


def test_pins_naming_nothing_known_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="provider 'xai' is not enabled"):
        plan(
            req(model="xai/grok"), TaskSpec(""), RoutingConfig(), offline=False, providers=PROVIDERS, local_models=LOCAL
        )
    with pytest.raises(InvalidArgument, match="unknown model 'big'; known: smollm2, trend-adapter, openai/<model>"):
        plan(req(model="big"), TaskSpec(""), RoutingConfig(), offline=False, providers=PROVIDERS, local_models=LOCAL)


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
