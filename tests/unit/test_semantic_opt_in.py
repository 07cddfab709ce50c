"""A request's own say on the semantic cache: the HTTP header or body field, and gRPC field 16."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.api import convert, openai_request
from gateway.v1 import gateway_pb2 as pb

USER = [{"role": "user", "content": "BTC above 60k?"}]


def chat(body: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> bool | None:
    call = openai_request.chat_request(
        {"model": "", "messages": USER, **(body or {})},
        headers or {},
        request_id="r1",
        default_max_tokens=16,
        now=0.0,
    )
    return call.request.semantic_cache


@pytest.mark.parametrize(
    ("value", "expected"), [("on", True), ("true", True), ("1", True), ("off", False), ("0", False)]
)
def test_the_header_opts_in_or_out(value: str, expected: bool) -> None:
    assert chat(headers={"x-gateway-semantic-cache": value}) is expected


def test_the_body_field_opts_in_or_out_and_absent_means_the_tasks_setting() -> None:
    assert chat({"semantic_cache": True}) is True
    assert chat({"semantic_cache": False}) is False
    assert chat() is None


def test_anything_else_is_a_400_naming_where_it_came_from() -> None:
    with pytest.raises(openai_request.BadParam, match="x-gateway-semantic-cache"):
        chat(headers={"x-gateway-semantic-cache": "maybe"})
    with pytest.raises(openai_request.BadParam, match="semantic_cache"):
        chat({"semantic_cache": "yes"})


def test_grpc_field_16_unset_means_the_tasks_setting() -> None:
    message = pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="BTC above 60k?")])
    assert convert.request_from_proto(message, default_max_tokens=16, timeout_s=None).semantic_cache is None
    message.semantic_cache = False
    assert convert.request_from_proto(message, default_max_tokens=16, timeout_s=None).semantic_cache is False
    message.semantic_cache = True
    assert convert.request_from_proto(message, default_max_tokens=16, timeout_s=None).semantic_cache is True


def test_the_python_client_sends_field_16_only_when_set() -> None:
    from gateway.client import convert as client_convert
    from gateway.client.types import Request

    assert not client_convert.request_to_proto(Request("BTC above 60k?")).HasField("semantic_cache")
    sent = client_convert.request_to_proto(Request("BTC above 60k?", semantic_cache=False))
    assert sent.HasField("semantic_cache") and sent.semantic_cache is False
