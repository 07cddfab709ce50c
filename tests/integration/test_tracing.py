"""Traces end to end: a real gateway process (spans into the SDK's in-memory exporter) -> its span trees.

Echo local backend, provider stand-ins through the official SDKs: a local answer, a cache hit,
a rule escalation past a provider out of budget and a failing provider to one that answers,
a caller's traceparent over gRPC and over the OpenAI door. No prompt or answer text in any span.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer, Fault
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import start_gateway

Span = dict[str, Any]
SECRET = "zebra-quartz-prompt"  # appears in every prompt, and the echo backend repeats it in its answers
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def config(fakes: dict[str, FakeProviderServer]) -> str:
    return f"""
[local]
backend = "echo"

[tracing]
enabled = true

[routing]
escalation_order = ["xai", "openai", "anthropic"]

[[routing.rules]]
match_task = "analysis"
escalate = true

[tasks.analysis]

[providers.xai]
model = "grok-test"
base_url = "{base_url(fakes["xai"])}"
daily_token_budget = 1

[providers.openai]
model = "gpt-test"
base_url = "{base_url(fakes["openai"])}"
max_retries = 1

[providers.anthropic]
model = "claude-test"
base_url = "{base_url(fakes["anthropic"])}"
max_retries = 0
"""


def ask(request_id: str, text: str, **fields: Any) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        request_id=request_id, messages=[pb.ChatMessage(role="user", content=text)], max_tokens=8, **fields
    )


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeProviderServer]]:
    async with running("xai", "openai", "anthropic") as started:
        yield started


async def test_span_trees_of_local_cached_escalated_and_caller_traced_requests(
    fakes: dict[str, FakeProviderServer], tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.json"
    fakes["openai"].always(Fault(status=500))
    gateway = await asyncio.to_thread(
        start_gateway, config(fakes), tmp_path, env=TEST_KEYS, entry=("-m", "tests.tracing_gateway", str(spans_file))
    )
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            local = await stub.Generate(ask("local-1", f"say {SECRET} once"), timeout=30)
            hit = await stub.Generate(ask("hit-1", f"say {SECRET} once"), timeout=30)
            remote = await stub.Generate(ask("remote-1", f"analyse {SECRET}", task="analysis"), timeout=60)
            traceparent = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
            await stub.Generate(
                ask("traced-grpc", f"again {SECRET}", bypass_cache=True),
                metadata=(("traceparent", traceparent), ("tracestate", "desk=7")),
                timeout=30,
            )
        await asyncio.to_thread(_openai_call, gateway.http_url, traceparent)
    finally:
        assert await asyncio.to_thread(gateway.stop) == 0
    spans: list[Span] = json.loads(spans_file.read_text())
    assert (local.tier, hit.tier, remote.tier) == (pb.TIER_LOCAL, pb.TIER_CACHE, pb.TIER_REMOTE)

    # a local answer: request -> cache (miss) + local (ok, confidence, tokens)
    request = _request_span(spans, "local-1")
    assert request["parent_id"] is None and request["kind"] == "SpanKind.SERVER"
    attributes = request["attributes"]
    assert (attributes["gateway.tier"], attributes["gateway.provider"], attributes["gateway.escalation"]) == (
        "local",
        "echo",
        "none",
    )
    assert attributes["gateway.confidence"] == 1.0
    assert attributes["gen_ai.usage.output_tokens"] == local.usage.completion_tokens > 0
    assert attributes["gateway.overhead_ms"] == pytest.approx(local.overhead_ms, abs=1e-3)
    assert [s["name"] for s in _children(spans, request)] == ["gateway.cache", "gateway.local"]
    cache, local_span = _children(spans, request)
    assert cache["attributes"]["gateway.cache.result"] == "miss"
    assert local_span["attributes"]["gateway.outcome"] == "ok"
    assert local_span["attributes"]["gateway.confidence"] == 1.0
    assert "gateway.local.queue_estimate_ms" in local_span["attributes"]
    queue, generate = _children(spans, local_span)  # the local attempt's phases, as the backend measured them
    assert (queue["name"], generate["name"]) == ("gateway.local.queue", "gateway.local.generate")
    assert local_span["start_time"] <= queue["start_time"] <= queue["end_time"] <= generate["start_time"]
    assert generate["end_time"] <= local_span["end_time"]
    assert generate["attributes"]["gen_ai.usage.output_tokens"] == local.usage.completion_tokens

    # a cache hit: the lookup is the only step
    request = _request_span(spans, "hit-1")
    assert request["attributes"]["gateway.tier"] == "cache"
    assert [(s["name"], s["attributes"]["gateway.cache.result"]) for s in _children(spans, request)] == [
        ("gateway.cache", "hit")
    ]

    # an escalation by rule: xai skipped (budget spent), openai failing (two tries, one retry), anthropic answering
    request = _request_span(spans, "remote-1")
    assert (request["attributes"]["gateway.tier"], request["attributes"]["gateway.escalation"]) == ("remote", "rule")
    assert request["attributes"]["gateway.provider"] == "anthropic"
    assert [s["name"] for s in _children(spans, request)] == ["gateway.cache", "gateway.remote"]
    chain = _children(spans, request)[1]
    assert chain["attributes"]["gateway.remote.order"] == "xai,openai,anthropic"
    xai, openai, anthropic = _children(spans, chain)
    assert (xai["attributes"]["gateway.provider"], xai["attributes"]["gateway.outcome"]) == ("xai", "skipped")
    assert [e["name"] for e in xai["events"]] == ["provider.skipped"]
    assert "daily token budget spent" in xai["events"][0]["attributes"]["gateway.error"]
    assert fakes["xai"].requests == 0
    assert (openai["name"], openai["attributes"]["gateway.provider"]) == ("gateway.provider", "openai")
    assert openai["attributes"]["gateway.outcome"] == "error"
    assert [e["name"] for e in openai["events"]] == ["provider.attempt", "provider.retry", "provider.attempt"]
    assert [e["attributes"]["gateway.outcome"] for e in openai["events"] if e["name"] == "provider.attempt"] == [
        "error",
        "error",
    ]
    assert anthropic["attributes"]["gateway.provider"] == "anthropic"
    assert anthropic["attributes"]["gateway.outcome"] == "ok"
    assert anthropic["attributes"]["gen_ai.usage.output_tokens"] == remote.usage.completion_tokens
    assert [e["attributes"]["gateway.outcome"] for e in anthropic["events"]] == ["ok"]

    # the caller's trace context, over gRPC metadata and over the OpenAI door's headers
    for request_id in ("traced-grpc", "traced-http"):
        request = _request_span(spans, request_id)
        assert request["context"]["trace_id"] == f"0x{CALLER_TRACE}"
        assert request["parent_id"] == f"0x{CALLER_SPAN}"
        assert all(s["context"]["trace_id"] == f"0x{CALLER_TRACE}" for s in _children(spans, request))

    # never the prompt or the answer (the echo backend repeats the prompt), in any name, attribute or event
    assert SECRET in local.text
    assert SECRET not in json.dumps(spans)


def _openai_call(http_url: str, traceparent: str) -> None:
    body = {"model": "", "messages": [{"role": "user", "content": f"door {SECRET}"}], "max_tokens": 8}
    request = urllib.request.Request(
        f"{http_url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "traceparent": traceparent, "x-gateway-request-id": "traced-http"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        answer = json.loads(reply.read())
    assert answer["gateway"]["overhead_ms"] >= 0


def _request_span(spans: list[Span], request_id: str) -> Span:
    found = [s for s in spans if s["name"] == "gateway.request" and s["attributes"]["gateway.request_id"] == request_id]
    assert len(found) == 1, f"one request span for {request_id}, got {len(found)}"
    return found[0]


def _children(spans: list[Span], parent: Span) -> list[Span]:
    mine = [s for s in spans if s["parent_id"] == parent["context"]["span_id"]]
    return sorted(mine, key=lambda s: s["start_time"])
