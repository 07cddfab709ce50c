"""The OpenAI door over real HTTP (aiohttp server and client) with a scripted answerer that records what it saw."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.api import http
from gateway.api.http_auth import CLIENT_KEY
from gateway.api.openai_http import OpenAIRoutes
from gateway.core.contracts import Delta, Escalation, ModelEntry, Priority, Privacy, Request, Result, Tier, Usage
from gateway.core.errors import GatewayError, InvalidArgument, ResourceExhausted, Unavailable
from gateway.observe.metrics import Metrics
from gateway.routing.admission import Admission, AdmissionSettings, Permit, TierLimits
from gateway.routing.gradient import GradientSettings
from tests.waiting import wait_until_async

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LIMIT = 4096
USER = [{"role": "user", "content": "Is the trend up?"}]


def result_for(request: Request, text: str = "The trend is up") -> Result:
    return Result(
        request_id=request.request_id,
        text=text,
        tier=Tier.LOCAL,
        provider="echo",
        model="echo",
        confidence=0.93,
        escalation=Escalation.NONE,
        usage=Usage(5, 4),
        attempts=(),
        finish_reason="stop",
        latency_ms=2.0,
    )


@dataclass
class Scripted:
    """An Answerer: answers at once, fails up front, fails mid-stream, or blocks until cancelled."""

    refuse: GatewayError | None = None  # raised before any event
    fail_mid_stream: GatewayError | None = None  # raised after the first piece
    block: bool = False  # wait (after the first piece, on streams) until cancelled
    seen: list[Request] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def _hold(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def generate(self, request: Request) -> Result:
        self.seen.append(request)
        if self.refuse is not None:
            raise self.refuse
        if self.block:
            await self._hold()
        return result_for(request)

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        self.seen.append(request)
        if self.refuse is not None:
            raise self.refuse
        yield Delta("The")
        if self.fail_mid_stream is not None:
            raise self.fail_mid_stream
        if self.block:
            await self._hold()
        yield Delta(" trend is up")
        yield result_for(request)

    def models(self) -> list[ModelEntry]:
        return [ModelEntry("echo", Tier.LOCAL, "echo"), ModelEntry("openai/gpt-test", Tier.REMOTE, "openai")]


Start = Callable[[Scripted], Awaitable[str]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    @web.middleware
    async def as_client(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[CLIENT_KEY] = request.headers.get("x-test-client", "")  # what the auth middleware leaves
        return await handler(request)

    async def run(answerer: Scripted) -> str:
        routes = OpenAIRoutes(answerer, default_max_tokens=32, max_request_bytes=LIMIT, clock=lambda: NOW)
        app = http.build_app(Metrics(), serving=lambda: True, openai=routes, max_request_bytes=LIMIT)
        app.middlewares.append(as_client)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)  # as gateway/app/server.py
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"

    yield run
    for runner in runners:
        await runner.cleanup()


async def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Mapping[str, str], Any]:
    async with aiohttp.ClientSession() as session:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})}
        async with session.post(f"{url}/chat/completions", data=data, headers=sent) as reply:
            text = await reply.text()
            content = json.loads(text) if reply.content_type == "application/json" else text
            return reply.status, reply.headers.copy(), content


def events(text: str) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded; [DONE] stays a string."""
    found: list[Any] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            data = line[len("data: ") :]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


async def test_a_plain_answer_with_the_gateway_object_and_headers(start: Start) -> None:
    answerer = Scripted()
    url = await start(answerer)
    body = {"model": "echo", "messages": USER, "max_tokens": 9, "privacy": "local_only"}
    status, headers, reply = await post(url, body, {"x-gateway-task": "", "x-test-client": "desk-a"})
    assert status == 200
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["content"] == "The trend is up"
    assert reply["gateway"]["confidence"] == 0.93
    assert (headers["x-gateway-tier"], headers["x-gateway-provider"], headers["x-gateway-confidence"]) == (
        "local",
        "echo",
        "0.9300",
    )
    seen = answerer.seen[0]
    assert (seen.model, seen.max_tokens, seen.privacy, seen.client) == ("echo", 9, Privacy.LOCAL_ONLY, "desk-a")
    assert headers["x-request-id"] == seen.request_id


async def test_a_stream_in_openai_chunks_ending_with_done(start: Start) -> None:
    url = await start(Scripted())
    body = {"model": "echo", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    status, headers, text = await post(url, body, {"x-gateway-request-id": "abc"})
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["x-gateway-request-id"] == "abc"
    assert "x-gateway-tier" not in headers  # not known before the answer; it is in the last chunk
    chunks = events(text)
    assert chunks[-1] == "[DONE]"
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[:-1] if c["choices"])
    assert pieces == "The trend is up"
    assert {c["id"] for c in chunks[:-1]} == {"chatcmpl-abc"}
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-2]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    assert chunks[-2]["gateway"]["tier"] == "local"


async def test_a_stream_refused_up_front_gets_its_status_code(start: Start) -> None:
    url = await start(Scripted(refuse=InvalidArgument("task: unknown task 'x'; known tasks: trend")))
    status, _, reply = await post(url, {"messages": USER, "stream": True, "task": "x"})
    assert status == 400
    assert reply["error"]["param"] == "task"


async def test_a_failure_mid_stream_is_an_sse_error_event(start: Start) -> None:
    url = await start(Scripted(fail_mid_stream=Unavailable("every provider failed")))
    status, _, text = await post(url, {"messages": USER, "stream": True})
    assert status == 200
    chunks = events(text)
    assert chunks[-1]["error"] == {
        "message": "every provider failed",
        "type": "service_unavailable",
        "param": None,
        "code": "unavailable",
    }
    assert "[DONE]" not in chunks


async def test_a_spent_budget_is_429_with_retry_after(start: Start) -> None:
    resets = NOW + timedelta(hours=2)
    url = await start(Scripted(refuse=ResourceExhausted("daily token budget spent", resets_at=resets)))
    status, headers, reply = await post(url, {"messages": USER})
    assert status == 429
    assert headers["Retry-After"] == "7200"
    assert reply["error"]["type"] == "rate_limit_error"


async def test_malformed_json_is_400(start: Start) -> None:
    url = await start(Scripted())
    status, _, reply = await post(url, b'{"messages": [')
    assert status == 400
    assert reply["error"]["param"] == "body"
    assert "not valid JSON" in reply["error"]["message"]
    status, _, reply = await post(url, b"\xff\xfe{}")
    assert (status, reply["error"]["param"]) == (400, "body")


async def test_a_wrong_content_type_is_415(start: Start) -> None:
    url = await start(Scripted())
    status, _, reply = await post(url, json.dumps({"messages": USER}).encode(), {"Content-Type": "text/plain"})
    assert status == 415
    assert "application/json" in reply["error"]["message"]


async def test_an_oversized_body_is_413(start: Start) -> None:
    answerer = Scripted()
    url = await start(answerer)
    big = {"messages": [{"role": "user", "content": "x" * (LIMIT + 1)}]}
    status, _, reply = await post(url, big)
    assert status == 413
    assert "server.max_request_bytes" in reply["error"]["message"]

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the limit applies while reading
        yield json.dumps(big).encode()

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/chat/completions", data=chunked(), headers={"Content-Type": "application/json"}) as reply,
    ):
        assert reply.status == 413
    assert answerer.seen == []


async def test_a_passed_deadline_is_504_and_cancels_the_work(start: Start) -> None:
    answerer = Scripted(block=True)
    url = await start(answerer)
    status, headers, reply = await post(url, {"messages": USER}, {"x-gateway-timeout-ms": "50"})
    assert status == 504
    assert reply["error"]["code"] == "deadline_exceeded"
    assert headers["x-should-retry"] == "false"
    assert answerer.cancelled.is_set()


async def test_a_client_that_disconnects_mid_stream_cancels_the_work(start: Start) -> None:
    answerer = Scripted(block=True)
    url = await start(answerer)
    async with aiohttp.ClientSession() as session:
        reply = await session.post(
            f"{url}/chat/completions",
            data=json.dumps({"messages": USER, "stream": True}),
            headers={"Content-Type": "application/json"},
        )
        while b'"content":"The"' not in await reply.content.readline():  # the first piece arrived
            pass
        reply.close()  # drops the connection
    await wait_until_async(answerer.cancelled.is_set, timeout_s=10, what="the stream's work to be cancelled")


async def test_a_client_that_disconnects_during_a_plain_request_cancels_the_work(start: Start) -> None:
    answerer = Scripted(block=True)
    url = await start(answerer)
    async with aiohttp.ClientSession() as session:
        sent = asyncio.ensure_future(
            session.post(
                f"{url}/chat/completions", json={"messages": USER}, headers={"Content-Type": "application/json"}
            )
        )
        await wait_until_async(lambda: answerer.seen, timeout_s=10, what="the request to reach the answerer")
        sent.cancel()  # the client gives up and closes its connection
    await wait_until_async(answerer.cancelled.is_set, timeout_s=10, what="the request's work to be cancelled")


async def test_models_in_openai_form(start: Start) -> None:
    url = await start(Scripted())
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/models") as reply:
            listed = await reply.json()
        async with session.get(f"{url}/models/openai/gpt-test") as reply:
            one = await reply.json()
        async with session.get(f"{url}/models/nope") as reply:
            missing = (reply.status, await reply.json())
    assert [m["id"] for m in listed["data"]] == ["echo", "openai/gpt-test"]
    assert one["owned_by"] == "openai"
    assert one["gateway"]["tier"] == "remote"
    assert missing[0] == 404
    assert missing[1]["error"]["code"] == "model_not_found"


async def test_an_unserved_v1_path_is_openais_404_and_a_wrong_method_405(start: Start) -> None:
    url = await start(Scripted())
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}/embeddings", json={"model": "x", "input": "hi"}) as reply:
            unknown = (reply.status, await reply.json())
        async with session.get(f"{url}/completions") as reply:
            other = (reply.status, await reply.json())
        async with session.get(f"{url}/chat/completions") as reply:
            wrong_method = (reply.status, reply.headers.get("Allow"), await reply.json())
    assert unknown[0] == 404
    assert unknown[1]["error"]["type"] == "not_found_error"
    assert unknown[1]["error"]["code"] == "not_found"
    assert "POST /v1/embeddings" in unknown[1]["error"]["message"]
    assert other[0] == 404 and "GET /v1/completions" in other[1]["error"]["message"]
    assert wrong_method[0] == 405
    assert wrong_method[1] == "POST"
    assert wrong_method[2]["error"]["param"] is None
    assert "use POST" in wrong_method[2]["error"]["message"]


async def test_a_saturated_gateway_answers_429_with_retry_after_before_reading_the_body() -> None:
    admission = Admission(
        AdmissionSettings(urgent_share=0.5), TierLimits(door=GradientSettings(initial=2, min_limit=1, max_limit=2))
    )
    held = admission.enter_door("", Priority.NORMAL)  # the one NORMAL place is taken
    assert isinstance(held, Permit)
    answerer = Scripted()
    routes = OpenAIRoutes(
        answerer, default_max_tokens=32, max_request_bytes=LIMIT, clock=lambda: NOW, admission=admission
    )
    app = http.build_app(Metrics(), serving=lambda: True, openai=routes, max_request_bytes=LIMIT)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
        status, headers, error = await post(url, body)
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert "gateway concurrency limit reached" in error["error"]["message"]
        assert answerer.seen == []
        status, _, _ = await post(url, body, {"x-gateway-priority": "urgent"})  # the URGENT share is free
        assert status == 200
    finally:
        await runner.cleanup()
