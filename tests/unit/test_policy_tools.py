"""Where a request that uses tools may go: the policy alone decides it (gateway/routing/policy.py), and the
tool definitions, choice and turns are checked once (gateway/core/tools.py)."""

from __future__ import annotations

import pytest

from gateway.config import RoutingConfig, RuleConfig
from gateway.core import tools
from gateway.core.contracts import Message, Privacy, Request, Role, TaskSpec, Tool, ToolCall, ToolChoice
from gateway.core.errors import InvalidArgument
from gateway.routing.policy import match_rule, plan

PROVIDERS = ("openai", "anthropic")
LOCAL = frozenset({"smollm2"})
QUOTE = Tool("get_quote", "A price.", '{"type":"object"}')
CALLED = (
    Message(Role.USER, "ETH?"),
    Message(Role.ASSISTANT, "", (ToolCall("c1", "get_quote", "{}"),)),
    Message(Role.TOOL, "3120", tool_call_id="c1"),
)


def req(**fields: object) -> Request:
    return Request("r", (Message(Role.USER, "hi"),), 8, **fields)  # type: ignore[arg-type]


def plan_for(request: Request, routing: RoutingConfig | None = None, **kwargs: object):  # type: ignore[no-untyped-def]
    values: dict[str, object] = {"offline": False, "providers": PROVIDERS, "local_models": LOCAL}
    values.update(kwargs)
    return plan(request, TaskSpec(""), routing or RoutingConfig(), **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_", [req(tools=(QUOTE,)), Request("r", CALLED, 8)], ids=["tools offered", "tool turns only"]
)
def test_a_request_that_uses_tools_skips_a_local_backend_without_tool_support(request_: Request) -> None:
    p = plan_for(request_)
    assert p.tools_remote and not p.try_local and p.remote_allowed and p.order
    assert not p.rule_escalation and not p.hedge


def test_a_local_backend_that_supports_tools_is_tried_first() -> None:
    p = plan_for(req(tools=(QUOTE,)), local_tools=True)
    assert p.try_local and not p.tools_remote


def test_a_request_without_tools_is_unchanged() -> None:
    p = plan_for(req(tool_choice=ToolChoice("none")))
    assert p.try_local and not p.tools_remote


def test_a_provider_pin_with_tools_goes_to_that_provider() -> None:
    p = plan_for(req(tools=(QUOTE,), model="openai/gpt-test"))
    assert p.pinned_remote and p.order == ("openai",) and not p.try_local and not p.tools_remote


@pytest.mark.parametrize(
    ("request_", "kwargs", "routing", "says"),
    [
        (req(tools=(QUOTE,), privacy=Privacy.LOCAL_ONLY), {}, None, "privacy = PRIVACY_LOCAL_ONLY"),
        (req(tools=(QUOTE,)), {"offline": True}, None, "offline = true"),
        (req(tools=(QUOTE,)), {"providers": ()}, None, "no remote provider is enabled"),
        (req(tools=(QUOTE,), model="smollm2"), {}, None, "model 'smollm2' is a local pin"),
        (
            req(tools=(QUOTE,), tags={"desk": "x"}),
            {},
            RoutingConfig(rules=(RuleConfig(match_tag={"desk": "x"}, local_only=True),)),
            "local_only = true",
        ),
    ],
    ids=["local only", "offline", "no provider", "local pin", "local-only rule"],
)
def test_where_no_tier_may_take_tools_it_is_invalid_argument_naming_what_to_change(
    request_: Request, kwargs: dict[str, object], routing: RoutingConfig | None, says: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_for(request_, routing, **kwargs)
    assert caught.value.message.startswith("tools: ")
    assert says in caught.value.message
    assert "drop" in caught.value.message


def test_tool_turns_alone_on_a_local_only_request_name_messages() -> None:
    with pytest.raises(InvalidArgument) as caught:
        plan_for(Request("r", CALLED, 8, privacy=Privacy.LOCAL_ONLY))
    assert caught.value.message.startswith("messages: the local backend does not support tools")


def test_a_rule_matches_on_has_tools() -> None:
    routing = RoutingConfig(
        rules=(
            RuleConfig(match_tools=True, prefer=("anthropic",)),
            RuleConfig(match_tools=False, local_only=True),
        )
    )
    assert match_rule(routing.rules, req(tools=(QUOTE,))) is routing.rules[0]
    assert match_rule(routing.rules, Request("r", CALLED, 8)) is routing.rules[0]
    assert match_rule(routing.rules, req()) is routing.rules[1]
    assert plan_for(req(tools=(QUOTE,)), routing).order[0] == "anthropic"
    assert not plan_for(req(), routing).remote_allowed
    escalate = RoutingConfig(rules=(RuleConfig(match_tools=True, escalate=True),))
    p = plan_for(req(tools=(QUOTE,)), escalate)
    assert p.rule_escalation and not p.tools_remote  # the rule's reason comes first


BAD = [
    (((Tool("get quote"),), None, ()), "tools[0].name: 'get quote' is not a function name"),
    (((QUOTE, QUOTE), None, ()), "tools[1].name: 'get_quote' is offered twice"),
    (((Tool("f", parameters='{"type":"objekt"}'),), None, ()), "tools[0].parameters: "),
    (((QUOTE,), ToolChoice("function", "get_news"), ()), "tool_choice: 'get_news' is not one of the tools offered"),
    (((), ToolChoice("required"), ()), "tool_choice: 'required' needs tools"),
    (((), None, (Message(Role.TOOL, "1", tool_call_id="c9"),)), "messages[0].tool_call_id: 'c9' answers no tool call"),
    (((), None, (Message(Role.ASSISTANT, "", (ToolCall("", "f", "{}"),)),)), "messages[0].tool_calls: every tool"),
]


@pytest.mark.parametrize(("args", "says"), BAD, ids=[s.split(":")[0] for _, s in BAD])
def test_bad_tools_choices_and_turns_are_named(args: tuple, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InvalidArgument) as caught:
        tools.check(*args)
    assert caught.value.message.startswith(says)


def test_good_tools_choices_and_turns_pass() -> None:
    tools.check((QUOTE, Tool("news")), ToolChoice("function", "news"), CALLED)
    tools.check((), ToolChoice("none"), ())
    tools.check((), ToolChoice("auto"), ())
