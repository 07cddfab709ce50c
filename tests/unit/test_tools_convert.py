"""Tools at the doors: OpenAI JSON and proto -> domain, and tool calls back out in OpenAI's exact shapes
(message.tool_calls, finish_reason, stream delta.tool_calls) and the proto's."""

from __future__ import annotations

import json
from typing import Any

from gateway.api import convert, openai_request, openai_response
from gateway.core.contracts import (
    Delta,
    Escalation,
    Message,
    Result,
    Role,
    Tier,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)
from gateway.core.openai_wire import ChunkAccumulator, chat_messages, read_completion
from gateway.v1 import gateway_pb2 as pb

PARAMETERS = {"type": "object", "properties": {"symbol": {"type": "string"}}}
TOOLS = [{"type": "function", "function": {"name": "get_quote", "description": "A price.", "parameters": PARAMETERS}}]
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "BTC?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_quote", "arguments": "{}"}}],
    },
    {"role": "tool", "tool_call_id": "c1", "content": "97000"},
]


def convert_body(body: dict[str, Any]) -> openai_request.ChatCall:
    return openai_request.chat_request(body, {}, request_id="r1", default_max_tokens=16, now=0.0)


def test_openai_tools_choice_and_tool_turns_become_the_domain_request() -> None:
    request = convert_body(
        {
            "messages": CONVERSATION,
            "tools": TOOLS,
            "tool_choice": {"type": "function", "function": {"name": "get_quote"}},
            "parallel_tool_calls": False,
        }
    ).request
    assert request.tools == (Tool("get_quote", "A price.", json.dumps(PARAMETERS, separators=(",", ":"))),)
    assert request.tool_choice == ToolChoice("function", "get_quote")
    assert request.parallel_tool_calls is False
    assert request.messages[1] == Message(Role.ASSISTANT, "", (ToolCall("c1", "get_quote", "{}"),))
    assert request.messages[2] == Message(Role.TOOL, "97000", tool_call_id="c1")
    assert request.uses_tools()
    assert chat_messages(request.messages) == CONVERSATION  # and back out to OpenAI-style providers as sent


def test_a_request_without_tools_does_not_use_them() -> None:
    request = convert_body({"messages": [{"role": "user", "content": "hi"}], "tool_choice": "none"}).request
    assert not request.uses_tools() and request.tool_choice == ToolChoice("none")


def result(**fields: Any) -> Result:
    values: dict[str, Any] = {
        "request_id": "r1",
        "text": "",
        "tier": Tier.REMOTE,
        "provider": "openai",
        "model": "gpt-test",
        "confidence": None,
        "escalation": Escalation.TOOLS,
        "usage": Usage(3, 4),
        "attempts": (),
        "finish_reason": "tool_calls",
        "latency_ms": 1.0,
        "tool_calls": (ToolCall("c1", "get_quote", '{"symbol":"BTC"}'),),
    }
    values.update(fields)
    return Result(**values)


def test_an_answer_that_calls_tools_is_openais_message_tool_calls() -> None:
    body = openai_response.completion_body(result(), created=1)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_quote", "arguments": '{"symbol":"BTC"}'}}
        ],
    }
    assert body["gateway"]["escalation"] == "tools"
    text = openai_response.completion_body(result(text="hi", tool_calls=(), finish_reason="stop"), created=1)
    assert "tool_calls" not in text["choices"][0]["message"]


def test_stream_pieces_are_openais_delta_tool_calls() -> None:
    pieces = (ToolCallDelta(0, "c1", "get_quote", ""), ToolCallDelta(0, arguments='{"sym'))
    assert openai_response.tool_call_deltas(pieces) == [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_quote", "arguments": ""}},
        {"index": 0, "function": {"arguments": '{"sym'}},
    ]


def test_openai_wire_reads_tool_calls_plain_and_streamed() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": CONVERSATION[1]["tool_calls"]}
    completion = read_completion({"choices": [{"message": message, "finish_reason": "tool_calls"}]}, "openai", "m")
    assert completion.tool_calls == (ToolCall("c1", "get_quote", "{}"),)
    assert completion.finish_reason == "tool_calls"
    reader = ChunkAccumulator("openai", "m")
    first = {"index": 0, "id": "c9", "type": "function", "function": {"name": "f", "arguments": ""}}
    for delta in ({"tool_calls": [first]}, {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}):
        reader.add({"choices": [{"delta": delta}]})
    reader.add({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]})
    assert reader.tool_pieces == (ToolCallDelta(0, "", "", ": 1}"),)
    assert reader.completion().tool_calls == (ToolCall("c9", "f", '{"a": 1}'),)
    assert reader.completion().finish_reason == "tool_calls"  # a stream cut before its finish chunk


def test_proto_tools_and_tool_calls_convert_both_ways() -> None:
    msg = pb.GenerateRequest(
        messages=[
            pb.ChatMessage(role="user", content="BTC?"),
            pb.ChatMessage(role="assistant", tool_calls=[pb.ToolCall(id="c1", name="get_quote", arguments="{}")]),
            pb.ChatMessage(role="tool", tool_call_id="c1", content="97000"),
        ],
        tools=[pb.Tool(name="get_quote", parameters=json.dumps(PARAMETERS))],
        tool_choice=pb.ToolChoice(mode="required", parallel_tool_calls=True),
    )
    request = convert.request_from_proto(msg, default_max_tokens=8, timeout_s=None)
    assert request.tools[0].name == "get_quote" and json.loads(request.tools[0].parameters) == PARAMETERS
    assert (request.tool_choice, request.parallel_tool_calls) == (ToolChoice("required"), True)
    assert request.messages[1].tool_calls == (ToolCall("c1", "get_quote", "{}"),)
    assert request.messages[2] == Message(Role.TOOL, "97000", tool_call_id="c1")
    response = convert.response_to_proto(result())
    assert [(c.id, c.name, c.arguments) for c in response.tool_calls] == [("c1", "get_quote", '{"symbol":"BTC"}')]
    assert response.escalation == pb.ESCALATION_TOOLS
    chunk = convert.chunk_to_proto(Delta("", (ToolCallDelta(0, "c1", "get_quote", "{"),)))
    assert [(p.index, p.id, p.name, p.arguments) for p in chunk.tool_calls] == [(0, "c1", "get_quote", "{")]
