"""The client's request -> GenerateRequest -> the server's Request: the fields a caller sets arrive."""

from __future__ import annotations

import json

import pytest

from gateway.api.convert import request_from_proto
from gateway.client.convert import request_to_proto
from gateway.client.types import Request
from gateway.core import structured
from gateway.core.contracts import ResponseFormat
from gateway.core.errors import InvalidArgument


def test_stop_sequences_reach_the_proto() -> None:
    assert list(request_to_proto(Request("trend?", stop=("\n", "END"))).stop) == ["\n", "END"]
    assert list(request_to_proto("trend?").stop) == []


def test_a_json_schema_reaches_the_proto_and_the_servers_request() -> None:
    schema = {"type": "object", "properties": {"signal": {"enum": ["buy", "sell"]}}}
    msg = request_to_proto(Request("trend?", json_schema=schema))
    assert msg.HasField("response_format") and json.loads(msg.response_format.json_schema) == schema
    fmt = request_from_proto(msg, default_max_tokens=8, timeout_s=None).response_format
    assert fmt == ResponseFormat(structured.canonical(schema), "response", False)
    any_object = request_to_proto(Request("trend?", json_schema={}))
    assert any_object.HasField("response_format") and any_object.response_format.json_schema == ""
    assert request_from_proto(any_object, default_max_tokens=8, timeout_s=None).response_format == ResponseFormat()
    assert not request_to_proto("trend?").HasField("response_format")
    assert request_from_proto(request_to_proto("trend?"), default_max_tokens=8, timeout_s=None).response_format is None


def test_a_json_schema_that_is_not_an_object_is_invalid_argument_naming_the_field() -> None:
    msg = request_to_proto("trend?")
    msg.response_format.json_schema = "[1]"
    with pytest.raises(InvalidArgument, match=r"^response_format.json_schema: expected a JSON object"):
        request_from_proto(msg, default_max_tokens=8, timeout_s=None)
    msg.response_format.json_schema = "{nope"
    with pytest.raises(InvalidArgument, match=r"^response_format.json_schema: not JSON"):
        request_from_proto(msg, default_max_tokens=8, timeout_s=None)
