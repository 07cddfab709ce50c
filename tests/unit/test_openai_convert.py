"""OpenAI JSON <-> domain: every field of the SDK's CompletionCreateParams has a decision, every 400 names its field."""

from __future__ import annotations

import dataclasses
import json
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openai.types.chat import completion_create_params

from gateway.api import openai_request, openai_response
from gateway.api.http_errors import error_headers, gateway_error_body, http_status, param_of
from gateway.api.openai_request import BadParam, chat_request
from gateway.core import structured
from gateway.core.contracts import (
    Attempt,
    Escalation,
    ModelEntry,
    Priority,
    Privacy,
    ResponseFormat,
    Result,
    Role,
    Tier,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import (
    BackendError,
    CapacityExceeded,
    DeadlineExceeded,
    GatewayError,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

NOW = 1000.0
USER = [{"role": "user", "content": "Is the trend up?"}]


def convert(body: Any, headers: dict[str, str] | None = None) -> openai_request.ChatCall:
    return chat_request(body, headers or {}, request_id="r1", default_max_tokens=64, now=NOW, client="desk-a")


def bad(body: Any, headers: dict[str, str] | None = None) -> BadParam:
    with pytest.raises(BadParam) as caught:
        convert(body, headers)
    return caught.value


def test_a_plain_request_becomes_the_domain_request() -> None:
    call = convert({"model": "", "messages": USER})
    request = call.request
    assert (request.request_id, request.client, request.model) == ("r1", "desk-a", "")
    assert [(m.role, m.content) for m in request.messages] == [(Role.USER, "Is the trend up?")]
    assert (request.max_tokens, request.temperature, request.deadline) == (64, 0.0, None)
    assert (request.priority, request.privacy, request.min_confidence, request.task) == (
        Priority.NORMAL,
        Privacy.DEFAULT,
        None,
        "",
    )
    assert (call.stream, call.include_usage) == (False, False)


def test_supported_fields_map_to_the_request() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Trend"}, {"type": "text", "text": "of AAPL?"}]},
        {"role": "assistant", "content": "Up.", "refusal": None, "tool_calls": []},
        {"role": "user", "content": "Sure?", "name": "trader"},
    ]
    call = convert(
        {
            "model": "openai/gpt-test",
            "messages": messages,
            "max_completion_tokens": 12,
            "temperature": 0.7,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    request = call.request
    assert [m.role for m in request.messages] == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER]
    assert request.messages[1].content == "Trend\nof AAPL?"
    assert (request.model, request.max_tokens, request.temperature) == ("openai/gpt-test", 12, 0.7)
    assert (call.stream, call.include_usage) == (True, True)
    assert convert({"messages": USER, "max_tokens": 7}).request.max_tokens == 7
    assert convert({"messages": USER, "stop": "\n"}).request.stop == ("\n",)
    assert convert({"messages": USER, "stop": ["END", "\n"]}).request.stop == ("END", "\n")
    assert convert({"messages": USER, "stop": None}).request.stop == ()


def test_response_format_becomes_the_requests_structured_answer() -> None:
    schema = {"type": "object", "properties": {"signal": {"enum": ["buy", "sell"]}}, "required": ["signal"]}
    as_schema = {"type": "json_schema", "json_schema": {"name": "trade", "schema": schema, "strict": True}}
    fmt = convert({"messages": USER, "response_format": as_schema}).request.response_format
    assert fmt == ResponseFormat(structured.canonical(schema), "trade", True)
    assert json.loads(fmt.schema) == schema
    assert convert({"messages": USER, "response_format": {"type": "json_object"}}).request.response_format == (
        ResponseFormat()
    )
    assert convert({"messages": USER, "response_format": {"type": "text"}}).request.response_format is None
    assert convert({"messages": USER, "logprobs": True, "top_logprobs": 3}).request.top_logprobs == 3
    assert convert({"messages": USER, "logprobs": True}).request.top_logprobs == 0
    assert convert({"messages": USER, "logprobs": False, "top_logprobs": 0}).request.top_logprobs is None


def test_extensions_come_from_the_body_or_from_headers() -> None:
    body = {
        "messages": USER,
        "task": "trend",
        "privacy": "local_only",
        "priority": "urgent",
        "min_confidence": 0.8,
        "bypass_cache": True,
        "tags": {"desk": "rates"},
    }
    request = convert(body).request
    assert (request.task, request.privacy, request.priority, request.min_confidence) == (
        "trend",
        Privacy.LOCAL_ONLY,
        Priority.URGENT,
        0.8,
    )
    assert (request.bypass_cache, dict(request.tags)) == (True, {"desk": "rates"})
    headers = {
        "x-gateway-task": "trend",
        "x-gateway-privacy": "local_only",
        "x-gateway-priority": "urgent",
        "x-gateway-min-confidence": "0.8",
    }
    from_headers = convert({"messages": USER}, headers).request
    assert (from_headers.task, from_headers.privacy, from_headers.priority, from_headers.min_confidence) == (
        "trend",
        Privacy.LOCAL_ONLY,
        Priority.URGENT,
        0.8,
    )
    assert convert(body, headers).request.task == "trend"  # both, agreeing


def test_deadline_from_the_gateway_header_and_the_sdk_timeouts() -> None:
    assert convert({"messages": USER}, {"x-gateway-timeout-ms": "2500"}).request.deadline == NOW + 2.5
    python_sdk = {"x-stainless-read-timeout": "30.0"}
    assert convert({"messages": USER}, python_sdk).request.deadline == NOW + 30.0
    node_sdk = {"x-stainless-timeout": "20", "x-gateway-timeout-ms": "60000"}
    assert convert({"messages": USER}, node_sdk).request.deadline == NOW + 20.0  # the shortest wins
    assert convert({"messages": USER}, {"x-stainless-timeout": "0"}).request.deadline is None  # sub-second, truncated
    # The SDKs' timeouts bound only the wait for the response headers, so a stream ignores them.
    stream = {"messages": USER, "stream": True}
    assert convert(stream, python_sdk).request.deadline is None
    assert convert(stream, {"x-gateway-timeout-ms": "500"}).request.deadline == NOW + 0.5


def test_every_field_of_the_openai_sdk_request_has_a_decision() -> None:
    """A new SDK field fails here until it is sorted into supported, ignored, default-only or rejected."""
    fields = set(typing.get_type_hints(completion_create_params.CompletionCreateParamsBase)) | {"stream"}
    undecided = fields - openai_request.KNOWN
    assert not undecided, f"decide these in gateway/api/openai_request.py and docs/openai_api.md: {sorted(undecided)}"


def test_ignored_fields_and_default_values_are_accepted() -> None:
    harmless = {
        "user": "u-1",
        "safety_identifier": "s",
        "metadata": {"k": "v"},
        "store": False,
        "seed": 7,
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "parallel_tool_calls": False,
        "n": 1,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "logprobs": False,
        "top_logprobs": 0,
        "logit_bias": {},
        "stop": None,
        "frequency_penalty": 0,
        "presence_penalty": 0.0,
        "top_p": 1,
        "modalities": ["text"],
        "service_tier": "auto",
        "audio": None,
        "reasoning_effort": None,
    }
    assert convert({"messages": USER, **harmless}).request.messages[0].content == "Is the trend up?"


REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"n": 2}, "n"),
    ({"tools": [{"type": "custom", "custom": {"name": "f"}}]}, "tools"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": []}}]}, "tools"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice"),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": []}}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "t", "strict": "yes"}}}, "response_format"),
    ({"logprobs": "yes"}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),  # without logprobs: true
    ({"logprobs": True, "top_logprobs": 2.5}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"stop": 5}, "stop"),
    ({"stop": ["\n", 3]}, "stop"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"presence_penalty": 1}, "presence_penalty"),
    ({"top_p": 0.9}, "top_p"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"audio": {"voice": "alloy", "format": "mp3"}}, "audio"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"reasoning_effort": "low"}, "reasoning_effort"),
    ({"verbosity": "low"}, "verbosity"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"moderation": {"model": "m"}}, "moderation"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"best_of": 2}, "best_of"),  # unknown
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ({"stream": True, "stream_options": {"include_obfuscation": False}}, "stream_options.include_obfuscation"),
    ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"model": 3}, "model"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": 2.5}, "max_completion_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_tokens": 10, "max_completion_tokens": 20}, "max_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"temperature": "hot"}, "temperature"),
    ({"task": 5}, "task"),
    ({"privacy": "secret"}, "privacy"),
    ({"priority": "high"}, "priority"),
    ({"min_confidence": 1.5}, "min_confidence"),
    ({"min_confidence": "0.5"}, "min_confidence"),
    ({"bypass_cache": "yes"}, "bypass_cache"),
    ({"tags": {"desk": 1}}, "tags"),
]


@pytest.mark.parametrize(("fields", "param"), REJECTED, ids=[p for _, p in REJECTED])
def test_unsupported_or_bad_fields_are_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    error = bad({"messages": USER, **fields})
    assert error.param == param
    assert error.message.startswith(f"{param}: ")
    assert http_status(error) == 400
    assert gateway_error_body(error)["error"]["param"] == param


BAD_MESSAGES: list[tuple[Any, str]] = [
    (None, "messages"),
    ([], "messages"),
    ("hello", "messages"),
    (["hello"], "messages[0]"),
    ([{"role": "tool", "content": "42"}], "messages[0].tool_call_id"),
    ([{"role": "function", "content": "42", "name": "f"}], "messages[0].role"),
    ([{"role": "robot", "content": "hi"}], "messages[0].role"),
    ([{"content": "hi"}], "messages[0].role"),
    ([{"role": "user"}], "messages[0].content"),
    ([{"role": "user", "content": "   "}], "messages[0].content"),
    ([{"role": "user", "content": 5}], "messages[0].content"),
    (
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
        "messages[0].content[0].type",
    ),
    (
        [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "input_audio", "input_audio": {}}]}],
        "messages[0].content[1].type",
    ),
    ([{"role": "user", "content": [{"type": "file", "file": {}}]}], "messages[0].content[0].type"),
    ([{"role": "user", "content": [{"type": "text", "text": 3}]}], "messages[0].content[0].text"),
    ([{"role": "user", "content": ["a"]}], "messages[0].content[0]"),
    ([{"role": "user", "content": "hi", "tool_call_id": "x"}], "messages[0].tool_call_id"),
    ([{"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}], "messages[0].tool_calls[0].function"),
    (
        [{"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
        "messages[0].tool_calls[0].id",
    ),
    ([{"role": "assistant", "content": "no", "refusal": "I refuse"}], "messages[0].refusal"),
]


@pytest.mark.parametrize(("messages", "param"), BAD_MESSAGES, ids=[p for _, p in BAD_MESSAGES])
def test_bad_messages_are_a_400_naming_the_message_field(messages: Any, param: str) -> None:
    assert bad({"messages": messages}).param == param


def test_a_body_that_is_not_an_object_is_a_400() -> None:
    assert bad([1, 2]).param == "body"


BAD_HEADERS = [
    ({"x-gateway-timeout-ms": "soon"}, "x-gateway-timeout-ms"),
    ({"x-gateway-timeout-ms": "-5"}, "x-gateway-timeout-ms"),
    ({"x-gateway-privacy": "LOCAL"}, "x-gateway-privacy"),
    ({"x-gateway-priority": "asap"}, "x-gateway-priority"),
    ({"x-gateway-min-confidence": "high"}, "x-gateway-min-confidence"),
    ({"x-gateway-min-confidence": "nan"}, "x-gateway-min-confidence"),
]


@pytest.mark.parametrize(("headers", "param"), BAD_HEADERS, ids=[p for _, p in BAD_HEADERS])
def test_bad_extension_headers_are_a_400_naming_the_header(headers: dict[str, str], param: str) -> None:
    assert bad({"messages": USER}, headers).param == param


def test_body_and_header_that_disagree_are_a_400() -> None:
    error = bad({"messages": USER, "task": "trend"}, {"x-gateway-task": "sentiment"})
    assert error.param == "task"
    assert "x-gateway-task" in error.message


def test_request_id_comes_from_the_header_or_is_generated() -> None:
    assert openai_request.request_id({}, lambda: "new") == "new"
    assert openai_request.request_id({"x-gateway-request-id": "abc-1"}, lambda: "new") == "abc-1"
    with pytest.raises(BadParam) as caught:
        openai_request.request_id({"x-gateway-request-id": "a b\r\nx: y"}, lambda: "new")
    assert caught.value.param == "x-gateway-request-id"


RESULT = Result(
    request_id="r1",
    text="The trend is up",
    tier=Tier.REMOTE,
    provider="openai",
    model="gpt-test",
    confidence=0.41,
    escalation=Escalation.LOW_CONFIDENCE,
    usage=Usage(12, 4),
    attempts=(
        Attempt("echo", "echo", "low_confidence", 1.5),
        Attempt("openai", "gpt-test", "error", 3.0, "HTTP 500: boom\r\nx-injected: 1"),
        Attempt("openai", "gpt-test", "ok", 20.0),
    ),
    finish_reason="max_tokens",
    latency_ms=25.0,
)


def test_a_result_becomes_a_chat_completion_with_the_gateway_object() -> None:
    body = openai_response.completion_body(RESULT, created=1700000000)
    assert body["id"] == "chatcmpl-r1"
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-test"
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "The trend is up", "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        }
    ]
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}
    gateway = body["gateway"]
    assert (gateway["tier"], gateway["provider"], gateway["confidence"], gateway["escalation"]) == (
        "remote",
        "openai",
        0.41,
        "low_confidence",
    )
    assert [a["outcome"] for a in gateway["attempts"]] == ["low_confidence", "error", "ok"]
    assert gateway["attempts"][1]["error"].startswith("HTTP 500")


def test_token_logprobs_when_asked_with_the_top_alternatives_the_tier_reported() -> None:
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    tokens = (
        TokenLogprob("The", -0.1, {"The": -0.1, "A": -2.5, "Up": -3.0}),
        TokenLogprob(" trend", -0.2, {}),
    )
    answered = dataclasses.replace(RESULT, tokens=tokens)
    body = openai_response.completion_body(answered, created=1, top_logprobs=2)
    content = body["choices"][0]["logprobs"]["content"]
    assert [(t["token"], t["logprob"]) for t in content] == [("The", -0.1), (" trend", -0.2)]
    assert [a["token"] for a in content[0]["top_logprobs"]] == ["The", "A"]
    assert content[1]["top_logprobs"] == [] and content[1]["bytes"] == list(b" trend")
    parsed = ChatCompletion.model_validate(body).choices[0].logprobs
    assert parsed is not None and parsed.content is not None and parsed.content[0].top_logprobs[1].logprob == -2.5
    none_asked = openai_response.completion_body(answered, created=1)
    assert none_asked["choices"][0]["logprobs"] is None
    assert openai_response.completion_body(RESULT, created=1, top_logprobs=2)["choices"][0]["logprobs"] is None
    last = openai_response.final_chunks(answered, created=1, include_usage=True, top_logprobs=0)
    streamed = ChatCompletionChunk.model_validate(last[0]).choices[0].logprobs
    assert streamed is not None and [t.token for t in streamed.content or []] == ["The", " trend"]
    assert all(t.top_logprobs == [] for t in streamed.content or [])


def test_result_headers_are_header_safe() -> None:
    headers = openai_response.result_headers(RESULT)
    assert headers["x-gateway-tier"] == "remote"
    assert headers["x-gateway-provider"] == "openai"
    assert headers["x-gateway-confidence"] == "0.4100"
    assert headers["x-gateway-escalation"] == "low_confidence"
    assert headers["x-gateway-attempts"] == "echo:low_confidence,openai:error,openai:ok"
    assert headers["x-request-id"] == "r1"
    assert all("\n" not in v and "\r" not in v for v in headers.values())
    local = Result("r2", "up", Tier.LOCAL, "echo", "echo", None, Escalation.NONE, Usage(), (), "stop", 1.0)
    assert "x-gateway-confidence" not in openai_response.result_headers(local)


def test_the_last_stream_chunk_carries_usage_and_the_gateway_object() -> None:
    plain = openai_response.final_chunks(RESULT, created=1, include_usage=False)
    assert [c["choices"][0]["finish_reason"] for c in plain] == ["length"]
    assert plain[-1]["gateway"]["tier"] == "remote"
    assert "usage" not in plain[0]
    with_usage = openai_response.final_chunks(RESULT, created=1, include_usage=True)
    assert with_usage[0]["usage"] is None and "gateway" not in with_usage[0]
    assert with_usage[1]["choices"] == []
    assert with_usage[1]["usage"]["total_tokens"] == 16
    assert with_usage[1]["gateway"]["escalation"] == "low_confidence"
    assert openai_response.sse({"a": 1}) == b'data: {"a":1}\n\n'


def test_models_list_in_openai_form() -> None:
    entries = [
        ModelEntry("echo", Tier.LOCAL, "echo"),
        ModelEntry("trend-lora", Tier.LOCAL, "echo", "trend", {"threshold": 0.7}),
        ModelEntry("openai/gpt-test", Tier.REMOTE, "openai"),
    ]
    body = openai_response.models_body(entries)
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        ("echo", "model", "echo"),
        ("trend-lora", "model", "echo"),
        ("openai/gpt-test", "model", "openai"),
    ]
    assert body["data"][1]["gateway"] == {
        "tier": "local",
        "provider": "echo",
        "task": "trend",
        "metrics": {"threshold": 0.7},
    }


STATUSES: list[tuple[GatewayError, int, str]] = [
    (InvalidArgument("task: unknown task 'x'"), 400, "invalid_request_error"),
    (Unauthenticated("missing key"), 401, "authentication_error"),
    (PermissionDenied("task not allowed"), 403, "permission_error"),
    (ResourceExhausted("every provider is out of budget"), 429, "rate_limit_error"),
    (CapacityExceeded("local tier is full"), 429, "rate_limit_error"),
    (Unavailable("no healthy tier"), 503, "service_unavailable"),
    (BackendError("provider failed"), 503, "service_unavailable"),
    (DeadlineExceeded("deadline passed"), 504, "timeout"),
    (GatewayError("bug"), 500, "server_error"),
]


@pytest.mark.parametrize(("error", "status", "kind"), STATUSES, ids=[type(e).__name__ for e, _, _ in STATUSES])
def test_gateway_errors_map_to_http_status_and_openai_error_body(error: GatewayError, status: int, kind: str) -> None:
    assert http_status(error) == status
    body = gateway_error_body(error)["error"]
    assert (body["message"], body["type"], body["code"]) == (error.message, kind, error.status.value.lower())


def test_param_of_a_router_error_is_read_from_its_message() -> None:
    assert param_of(InvalidArgument("task: unknown task 'x'; known tasks: trend")) == "task"
    assert param_of(InvalidArgument("max_tokens: 9000 exceeds the local model's context")) == "max_tokens"
    assert param_of(InvalidArgument("something without a field")) is None
    assert param_of(Unavailable("x: not a parameter")) is None


def test_retry_after_when_a_budget_resets() -> None:
    now = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)
    spent = ResourceExhausted("daily token budget spent", resets_at=now + timedelta(hours=1, milliseconds=1))
    assert error_headers(spent, now) == {
        "Retry-After": "3601",
        "x-gateway-resets-at": "2026-01-02T00:00:00Z",
        "x-should-retry": "false",
    }
    assert error_headers(ResourceExhausted("quota", resets_at=now - timedelta(seconds=5)), now)["Retry-After"] == "1"
    per_minute = error_headers(ResourceExhausted("1 request per minute", resets_at=now + timedelta(seconds=40)), now)
    assert (per_minute["Retry-After"], "x-should-retry" in per_minute) == ("40", False)  # the SDK waits, then retries
    assert error_headers(CapacityExceeded("full"), now) == {}  # no reset time: the SDK may retry soon
    assert error_headers(DeadlineExceeded("late"), now) == {"x-should-retry": "false"}
    assert error_headers(Unavailable("down"), now) == {}
