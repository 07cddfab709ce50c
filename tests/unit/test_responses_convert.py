"""Responses JSON <-> domain: every field of the SDK's ResponseCreateParams has a decision, every 400 names its
field, and a Result becomes a `response` object and OpenAI's event sequence."""

from __future__ import annotations

import json
import typing
from typing import Any

import pytest
from openai.types.responses import Response, response_create_params
from openai.types.responses.response_stream_event import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.api import responses_request
from gateway.api.openai_request import BadParam
from gateway.api.responses_request import ResponsesCall
from gateway.api.responses_response import ResponseEvents, response_body
from gateway.core.contracts import (
    Escalation,
    Priority,
    Privacy,
    ResponseFormat,
    Result,
    Role,
    Tier,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import Unavailable

NOW = 1000.0
SCHEMA = {
    "type": "object",
    "properties": {"signal": {"type": "string", "enum": ["buy", "sell"]}},
    "required": ["signal"],
    "additionalProperties": False,
}


def convert(body: Any, headers: dict[str, str] | None = None) -> ResponsesCall:
    return responses_request.responses_request(
        body, headers or {}, request_id="r1", default_max_tokens=64, now=NOW, client="desk-a"
    )


def bad(body: Any) -> BadParam:
    with pytest.raises(BadParam) as caught:
        convert(body)
    return caught.value


def result(text: str = "The trend is up", finish: str = "stop", tokens: tuple[TokenLogprob, ...] = ()) -> Result:
    return Result(
        request_id="r1",
        text=text,
        tier=Tier.LOCAL,
        provider="echo",
        model="echo",
        confidence=0.93,
        escalation=Escalation.NONE,
        usage=Usage(5, 4),
        attempts=(),
        finish_reason=finish,
        latency_ms=2.0,
        tokens=tokens,
    )


def test_every_field_of_the_openai_sdk_request_has_a_decision() -> None:
    """A new SDK field fails here until it is sorted into supported, ignored, default-only or rejected."""
    fields = set(typing.get_type_hints(response_create_params.ResponseCreateParamsBase)) | {"stream"}
    undecided = fields - responses_request.KNOWN
    assert not undecided, (
        f"decide these in gateway/api/responses_request.py and docs/openai_api.md: {sorted(undecided)}"
    )


def test_a_string_input_with_instructions_becomes_the_domain_request() -> None:
    call = convert(
        {
            "model": "gpt-4o-mini",
            "input": "Is the trend up?",
            "instructions": "Be brief.",
            "max_output_tokens": 20,
            "temperature": 0.5,
            "metadata": {"desk": "rates"},
            "store": False,
            "privacy": "local_only",
            "priority": "urgent",
        }
    )
    request = call.chat.request
    assert [(m.role, m.content) for m in request.messages] == [
        (Role.SYSTEM, "Be brief."),
        (Role.USER, "Is the trend up?"),
    ]
    assert (request.model, request.max_tokens, request.temperature, request.client) == (
        "gpt-4o-mini",
        20,
        0.5,
        "desk-a",
    )
    assert (request.privacy, request.priority, request.response_format, request.top_logprobs) == (
        Privacy.LOCAL_ONLY,
        Priority.URGENT,
        None,
        None,
    )
    assert (call.instructions, call.max_output_tokens, call.metadata, call.chat.stream) == (
        "Be brief.",
        20,
        {"desk": "rates"},
        False,
    )


def test_a_list_of_message_items_keeps_roles_and_joins_text_parts() -> None:
    call = convert(
        {
            "input": [
                {"role": "developer", "content": "Answer in one word."},
                {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Trend"}]},
                {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "Up.", "annotations": []}],
                },
                {
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Sure"}, {"type": "input_text", "text": "?"}],
                },
            ],
            "stream": True,
        }
    )
    messages = [(m.role, m.content) for m in call.chat.request.messages]
    assert messages == [
        (Role.SYSTEM, "Answer in one word."),
        (Role.USER, "Trend"),
        (Role.ASSISTANT, "Up."),
        (Role.USER, "Sure\n?"),
    ]
    assert call.chat.stream is True
    assert call.chat.request.max_tokens == 64  # the server's default


def test_text_format_maps_onto_the_chat_doors_response_format() -> None:
    schema = convert(
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "trade", "schema": SCHEMA, "strict": True}}}
    )
    fmt = schema.chat.request.response_format
    assert isinstance(fmt, ResponseFormat)
    assert (fmt.name, fmt.strict, json.loads(fmt.schema)) == ("trade", True, SCHEMA)
    assert schema.text_format == {"type": "json_schema", "name": "trade", "schema": SCHEMA, "strict": True}
    json_mode = convert({"input": "x", "text": {"format": {"type": "json_object"}}})
    assert json_mode.chat.request.response_format == ResponseFormat()
    plain = convert({"input": "x", "text": {"format": {"type": "text"}, "verbosity": "medium"}})
    assert plain.chat.request.response_format is None
    assert plain.text_format == {"type": "text"}


def test_logprobs_are_asked_through_include() -> None:
    call = convert({"input": "x", "include": ["message.output_text.logprobs"], "top_logprobs": 2})
    assert (call.logprobs, call.chat.request.top_logprobs) == (True, 2)
    without = convert({"input": "x", "top_logprobs": 2})
    assert (without.logprobs, without.chat.request.top_logprobs) == (False, None)


def test_ignored_fields_and_default_values_are_accepted() -> None:
    harmless = {
        "user": "u1",
        "safety_identifier": "s",
        "prompt_cache_key": "k",
        "parallel_tool_calls": True,
        "stream_options": {"include_obfuscation": False},
        "store": False,
        "previous_response_id": None,
        "tools": [],
        "tool_choice": "auto",
        "top_p": 1,
        "truncation": "disabled",
        "service_tier": "auto",
        "background": False,
        "reasoning": None,
    }
    assert convert({"input": "x", **harmless}).chat.request.messages[0].content == "x"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"frobnicate": 1}, "frobnicate"),
        ({"store": True}, "store"),
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"tools": [{"type": "function", "name": "quote"}]}, "tools"),
        ({"top_p": 0.5}, "top_p"),
        ({"truncation": "auto"}, "truncation"),
        ({"background": True}, "background"),
        ({"reasoning": {"effort": "high"}}, "reasoning"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": 3}, "input"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call_output", "call_id": "c", "output": "1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]},
            "input[0].content[0].type",
        ),
        ({"input": [{"role": "user", "content": "  "}]}, "input[0].content"),
        ({"input": [{"role": "user", "content": "x", "name": "n"}]}, "input[0].name"),
        ({"instructions": 3}, "instructions"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": True}, "max_output_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "name": "t", "schema": []}}}, "text.format"),
        ({"text": {"format": {"type": "json_schema", "name": "", "schema": SCHEMA}}}, "text.format"),
        ({"text": {"verbosity": "low"}}, "text.verbosity"),
        ({"text": {"format": {"type": "json_object", "extra": 1}}}, "text.format.extra"),
        ({"include": ["reasoning.encrypted_content"]}, "include"),
        ({"top_logprobs": "2"}, "top_logprobs"),
        ({"metadata": {"desk": 1}}, "metadata"),
        ({"stream": "yes"}, "stream"),
        ({"privacy": "secret"}, "privacy"),
    ],
)
def test_unsupported_or_bad_fields_are_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    error = bad({"input": "x", **fields})
    assert error.param == param
    assert error.message.startswith(f"{param}: ")


def test_a_body_that_is_not_an_object_is_a_400() -> None:
    assert bad(["x"]).param == "body"


def test_a_result_becomes_a_response_object_the_sdk_reads() -> None:
    call = convert({"input": "x", "instructions": "Be brief.", "metadata": {"desk": "rates"}})
    body = response_body(call, result(), created=100, completed=101)
    parsed = Response.model_validate(body)
    assert parsed.output_text == "The trend is up"
    assert (parsed.id, parsed.status, parsed.instructions, parsed.metadata) == (
        "resp_r1",
        "completed",
        "Be brief.",
        {"desk": "rates"},
    )
    assert parsed.usage is not None and (parsed.usage.input_tokens, parsed.usage.output_tokens) == (5, 4)
    assert body["gateway"]["tier"] == "local"
    assert body["gateway"]["confidence"] == 0.93


def test_an_answer_cut_by_its_token_limit_is_incomplete() -> None:
    body = response_body(convert({"input": "x"}), result(finish="length"), created=100, completed=101)
    assert (body["status"], body["incomplete_details"], body["completed_at"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
        None,
    )


def test_token_logprobs_on_the_text_part_when_included() -> None:
    tokens = (TokenLogprob("Up", -0.1, {"Up": -0.1, "Down": -2.5}),)
    call = convert({"input": "x", "include": ["message.output_text.logprobs"], "top_logprobs": 1})
    part = response_body(call, result("Up", tokens=tokens), created=1, completed=1)["output"][0]["content"][0]
    assert part["logprobs"] == [
        {
            "token": "Up",
            "logprob": -0.1,
            "bytes": list(b"Up"),
            "top_logprobs": [{"token": "Up", "logprob": -0.1, "bytes": list(b"Up")}],
        }
    ]
    plain = response_body(convert({"input": "x"}), result("Up", tokens=tokens), created=1, completed=1)
    assert plain["output"][0]["content"][0]["logprobs"] == []


def _decode(frames: list[bytes]) -> list[dict[str, Any]]:
    decoded = []
    for frame in frames:
        kind, data = frame.decode().removesuffix("\n\n").split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {event['type']}"
        decoded.append(event)
    return decoded


def test_a_stream_is_openais_event_sequence_numbered_in_order() -> None:
    events = ResponseEvents(convert({"input": "x", "stream": True}), created=100)
    frames = [
        *events.opening(),
        events.delta("The"),
        events.delta(" trend is up"),
        *events.closing(result(), completed=101),
    ]
    decoded = _decode(frames)
    assert [e["type"] for e in decoded] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in decoded] == list(range(len(decoded)))
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    for event in decoded:
        adapter.validate_python(event)  # every event in the SDK's own shape
    assert decoded[6]["text"] == "The trend is up"
    completed = decoded[-1]["response"]
    assert Response.model_validate(completed).output_text == "The trend is up"
    assert completed["gateway"]["provider"] == "echo"


def test_a_stream_whose_result_came_alone_sends_its_text_as_one_delta() -> None:
    events = ResponseEvents(convert({"input": "x", "stream": True}), created=100)
    decoded = _decode([*events.opening(), *events.closing(result('{"signal":"sell"}'), completed=101)])
    deltas = [e["delta"] for e in decoded if e["type"] == "response.output_text.delta"]
    assert deltas == ['{"signal":"sell"}']
    assert decoded[-1]["type"] == "response.completed"


def test_a_cut_stream_ends_with_response_incomplete_and_a_failure_is_an_error_event() -> None:
    events = ResponseEvents(convert({"input": "x", "stream": True}), created=100)
    decoded = _decode([*events.opening(), *events.closing(result(finish="length"), completed=101)])
    assert decoded[-1]["type"] == "response.incomplete"
    failed = ResponseEvents(convert({"input": "x", "stream": True}), created=100)
    failed.opening()
    error = _decode([failed.error(Unavailable("openai: every provider failed"))])[0]
    assert error == {
        "type": "error",
        "sequence_number": 4,
        "code": "unavailable",
        "message": "openai: every provider failed",
        "param": None,
    }
