"""BULK priority reaches admission from both doors, and is the class a batch job's requests get."""

from __future__ import annotations

import pytest

from gateway.api import convert
from gateway.api.openai_request import chat_request
from gateway.core.contracts import Priority
from gateway.core.errors import InvalidArgument
from gateway.routing.admission import Klass, request_class
from gateway.v1 import gateway_pb2 as pb


def proto(priority: int) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="hi")], priority=priority)  # type: ignore[arg-type]


def test_bulk_on_grpc_is_the_bulk_class() -> None:
    request = convert.request_from_proto(proto(pb.PRIORITY_BULK), default_max_tokens=8, timeout_s=None)
    assert request.priority is Priority.BULK
    assert request_class(request, {}) is Klass.BULK


def test_an_unknown_priority_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument, match="priority: unknown value 7"):
        convert.request_from_proto(proto(7), default_max_tokens=8, timeout_s=None)


def test_bulk_on_the_openai_door_is_the_bulk_class() -> None:
    body = {"model": "", "messages": [{"role": "user", "content": "hi"}], "priority": "bulk"}
    call = chat_request(body, {}, request_id="r1", default_max_tokens=8, now=0.0)
    assert call.request.priority is Priority.BULK
