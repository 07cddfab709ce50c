"""Tools through every provider's official SDK against its wire stand-in: the definitions, the choice, a
conversation with tool calls and results in each API's own format, and the answer's tool calls, plain and
streamed (tests/fakes/tool_wire.py says what each API takes and answers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.core.contracts import (
    Backend,
    BackendCall,
    Completion,
    Delta,
    Message,
    ResponseFormat,
    Role,
    Tool,
    ToolCall,
    ToolChoice,
)
from gateway.core.tools import CallAccumulator
from gateway.remote.providers.registry import build_provider
from tests.fakes.base import FakeProviderServer, Reply
from tests.fakes.providers import KINDS, TEST_KEYS, provider_config

ALL = sorted(KINDS)
PARAMETERS = {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}
QUOTE = Tool("get_quote", "The last price of a symbol.", json.dumps(PARAMETERS, separators=(",", ":")))
NEWS = Tool("get_news", "Headlines for a symbol.", "")
ASK = (Message(Role.SYSTEM, "You trade."), Message(Role.USER, "What is BTC at?"))
CALLS = (("get_quote", '{"symbol": "BTC"}'), ("get_news", '{"symbol": "BTC"}'))
EARLIER = ToolCall("call_a", "get_quote", '{"symbol":"ETH"}')
CONVERSATION = (
    Message(Role.USER, "What is ETH at?"),
    Message(Role.ASSISTANT, "", (EARLIER,)),
    Message(Role.TOOL, "3120.5", tool_call_id="call_a"),
    Message(Role.USER, "And BTC?"),
)


def call(**fields: Any) -> BackendCall:
    values: dict[str, Any] = {"request_id": "r1", "messages": ASK, "max_tokens": 32, "tools": (QUOTE, NEWS)}
    values.update(fields)
    return BackendCall(**values)


@pytest.fixture(params=ALL)
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, FakeProviderServer, Backend]]:
    kind = KINDS[request.param]
    fake = kind.fake()
    fake.reply = Reply("no tool needed", tool_calls=CALLS)
    await fake.start()
    provider = build_provider(kind.name, provider_config(kind.name, fake), TEST_KEYS[kind.key_env])
    yield kind.name, fake, provider
    await provider.aclose()
    await fake.stop()


def assert_called(completion: Completion) -> None:
    assert [(c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("get_quote", {"symbol": "BTC"}),
        ("get_news", {"symbol": "BTC"}),
    ]
    assert all(c.id for c in completion.tool_calls)
    assert len({c.id for c in completion.tool_calls}) == 2
    assert completion.finish_reason == "tool_calls"
    assert completion.text == ""


def sent_tools(name: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, parameters schema) of each tool as the API was sent it."""
    if name == "anthropic":
        return [(t["name"], t["input_schema"]) for t in body["tools"]]
    if name == "google":
        declared = [d for tool in body["tools"] for d in tool["functionDeclarations"]]
        # this SDK writes the field by its proto name, which the API's JSON parser takes as well as the camelCase
        return [(d["name"], d.get("parametersJsonSchema", d.get("parameters_json_schema"))) for d in declared]
    return [(t["function"]["name"], t["function"].get("parameters")) for t in body["tools"]]


async def test_tools_travel_in_each_apis_format_and_calls_come_back(
    setup: tuple[str, FakeProviderServer, Backend],
) -> None:
    name, fake, provider = setup
    completion = await provider.generate(call())
    assert_called(completion)
    tools = sent_tools(name, fake.seen[-1].body)
    assert tools[0] == ("get_quote", PARAMETERS)
    assert tools[1][0] == "get_news"


async def test_a_stream_yields_tool_call_pieces_that_spell_the_calls(
    setup: tuple[str, FakeProviderServer, Backend],
) -> None:
    _, _, provider = setup
    events = [event async for event in provider.stream(call())]
    *deltas, last = events
    assert isinstance(last, Completion)
    assert_called(last)
    folded = CallAccumulator()
    for delta in deltas:
        assert isinstance(delta, Delta)
        for piece in delta.tool_calls:
            folded.add(piece)
    assert folded.calls() == last.tool_calls
    first = next(d for d in deltas if isinstance(d, Delta) and d.tool_calls).tool_calls[0]
    assert (first.index, first.name) == (0, "get_quote") and first.id


async def test_a_conversation_with_tool_calls_and_results_round_trips(
    setup: tuple[str, FakeProviderServer, Backend],
) -> None:
    """The stand-ins refuse (400) a tool result that answers no call of the turn before it, as the APIs do."""
    name, fake, provider = setup
    completion = await provider.generate(call(messages=CONVERSATION))
    assert_called(completion)
    body = fake.seen[-1].body
    if name == "anthropic":
        assert body["messages"][1] == {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "call_a", "name": "get_quote", "input": {"symbol": "ETH"}}],
        }
        assert body["messages"][2] == {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_a", "content": "3120.5"}],
        }
    elif name == "google":
        model_turn, tool_turn = body["contents"][1], body["contents"][2]
        assert model_turn["role"] == "model"
        assert model_turn["parts"] == [
            {"functionCall": {"id": "call_a", "name": "get_quote", "args": {"symbol": "ETH"}}}
        ]
        assert tool_turn["role"] == "user"
        response = tool_turn["parts"][0]["functionResponse"]
        assert (response["id"], response["name"], response["response"]) == ("call_a", "get_quote", {"output": "3120.5"})
    else:
        assert body["messages"][1] == {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_quote", "arguments": '{"symbol":"ETH"}'}}
            ],
        }
        assert body["messages"][2] == {"role": "tool", "content": "3120.5", "tool_call_id": "call_a"}


CHOICES: dict[str, dict[str, Any]] = {
    "openai": {
        "required": "required",
        "none": "none",
        "function": {"type": "function", "function": {"name": "get_news"}},
    },
    "anthropic": {
        "required": {"type": "any", "disable_parallel_tool_use": True},
        "none": {"type": "none"},
        "function": {"type": "tool", "name": "get_news", "disable_parallel_tool_use": True},
    },
    "google": {
        "required": {"mode": "ANY"},
        "none": {"mode": "NONE"},
        "function": {"mode": "ANY", "allowedFunctionNames": ["get_news"]},
    },
}


@pytest.mark.parametrize("mode", ["required", "none", "function"])
async def test_tool_choice_and_parallel_calls_in_each_apis_terms(
    setup: tuple[str, FakeProviderServer, Backend], mode: str
) -> None:
    name, fake, provider = setup
    choice = ToolChoice(mode, "get_news" if mode == "function" else "")
    completion = await provider.generate(call(tool_choice=choice, parallel_tool_calls=False))
    body = fake.seen[-1].body
    if name == "google":
        assert body["toolConfig"]["functionCallingConfig"] == CHOICES["google"][mode]
        assert "parallel_tool_calls" not in json.dumps(body)  # Gemini has no such setting
    elif name == "anthropic":
        assert body["tool_choice"] == CHOICES["anthropic"][mode]
    else:
        assert body["tool_choice"] == CHOICES["openai"][mode]
        assert body["parallel_tool_calls"] is False
    if mode == "none":
        assert completion.tool_calls == () and completion.text == "no tool needed"
    else:
        assert completion.finish_reason == "tool_calls"


async def test_a_request_without_tools_sends_none(setup: tuple[str, FakeProviderServer, Backend]) -> None:
    _, fake, provider = setup
    completion = await provider.generate(call(tools=()))
    assert completion.text == "no tool needed" and completion.tool_calls == ()
    body = json.dumps(fake.seen[-1].body)
    assert "tool_choice" not in body and "functionDeclarations" not in body and '"tools"' not in body


async def test_anthropic_keeps_the_structured_answer_tool_apart_from_the_clients_tools() -> None:
    """With response_format and tools, the answer tool joins the client's tools unforced; the client's tool
    calls come back as calls, never as the structured answer."""
    kind = KINDS["anthropic"]
    fake = kind.fake()
    fake.reply = Reply('{"signal": "buy"}', tool_calls=CALLS)
    await fake.start()
    provider = build_provider("anthropic", provider_config("anthropic", fake), TEST_KEYS[kind.key_env])
    try:
        completion = await provider.generate(call(response_format=ResponseFormat('{"type":"object"}', "trade")))
        body = fake.seen[-1].body
        assert [t["name"] for t in body["tools"]] == ["get_quote", "get_news", "trade"]
        assert "tool_choice" not in body
        assert_called(completion)
    finally:
        await provider.aclose()
        await fake.stop()
