"""The client's request -> GenerateRequest: the fields a caller sets reach the proto."""

from __future__ import annotations

from gateway.client.convert import request_to_proto
from gateway.client.types import Request


def test_stop_sequences_reach_the_proto() -> None:
    assert list(request_to_proto(Request("trend?", stop=("\n", "END"))).stop) == ["\n", "END"]
    assert list(request_to_proto("trend?").stop) == []
