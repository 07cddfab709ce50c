"""The OpenAI-compatible door on the HTTP port: /v1/chat/completions and /v1/responses (plain and SSE), /v1/models.

HTTP -> openai_request -> answerer (cache, recording, router: the same path as gRPC) ->
openai_response -> HTTP. No routing decisions here. A stream waits for the answer's first
event before it sends its headers, so a request refused up front (bad task, no budget, no
tier) gets its real status code; a failure after that arrives as an SSE `error` event,
which the OpenAI SDKs raise as APIError. The client's deadline bounds the work, and a
client that goes away cancels it (the AppRunner is built with handler_cancellation).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.api import openai_request, openai_response, responses_request, responses_response
from gateway.api.http_auth import CLIENT_KEY  # where the authentication middleware leaves the caller's name
from gateway.api.http_errors import error_response, gateway_error_body, gateway_error_response
from gateway.api.openai_embeddings import EmbeddingRoutes
from gateway.core.contracts import Delta, ModelEntry, Priority, Request, Result
from gateway.core.errors import DeadlineExceeded, GatewayError, InvalidArgument
from gateway.routing.admission import Admission, Permit, Refusal
from gateway.routing.answerer import Answerer

log = logging.getLogger(__name__)
JSON_TYPES = frozenset({"application/json"})


def _new_id() -> str:
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class OpenAIRoutes:
    def __init__(
        self,
        answerer: Answerer,
        *,
        default_max_tokens: int,
        max_request_bytes: int,
        clock: Callable[[], datetime] = _now,
        new_id: Callable[[], str] = _new_id,
        embeddings: EmbeddingRoutes | None = None,
        admission: Admission | None = None,
    ) -> None:
        self._answerer = answerer
        self._admission = admission or Admission()
        self._embeddings = embeddings  # POST /v1/embeddings, when [embeddings] enabled
        self._default_max_tokens = default_max_tokens
        self._max_request_bytes = max_request_bytes
        self._clock = clock
        self._new_id = new_id

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/chat/completions", self.chat_completions),
            web.post("/v1/responses", self.responses),
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{name:.+}", self.get_model),
            *(self._embeddings.routes() if self._embeddings is not None else ()),
            web.route("*", "/v1/{path:.*}", self.not_served),  # last: what no route above answers
        ]

    async def not_served(self, http_request: web.Request) -> web.Response:
        """OpenAI's error object for a /v1 path the gateway does not serve (404), or a method it does
        not take there (405, with Allow), so the SDKs raise their typed errors instead of a bare status."""
        allowed: set[str] = set()
        mine = http_request.match_info.route.resource
        for resource in http_request.app.router.resources():
            if resource is not mine:
                match, methods = await resource.resolve(http_request)
                if match is None:
                    allowed |= methods
        path, method = http_request.path, http_request.method
        if allowed:
            return error_response(
                405,
                f"method: {method} is not allowed on {path}; use {', '.join(sorted(allowed))}",
                code="method_not_allowed",
                headers={"Allow": ",".join(sorted(allowed))},
            )
        served = "POST /v1/embeddings, " if self._embeddings is not None else ""
        served += "POST /v1/chat/completions, POST /v1/responses, GET /v1/models and GET /v1/models/{model}"
        return error_response(
            404, f"path: {method} {path} is not served here; the gateway serves {served}", code="not_found"
        )

    def _models(self) -> list[ModelEntry]:
        """What the answerer serves, and the embedding model when /v1/embeddings is served."""
        extra = self._embeddings.models() if self._embeddings is not None else []
        return [*self._answerer.models(), *extra]

    async def list_models(self, _: web.Request) -> web.Response:
        return web.json_response(openai_response.models_body(self._models()))

    async def get_model(self, http_request: web.Request) -> web.Response:
        name = http_request.match_info["name"]
        for entry in self._models():
            if entry.name == name:
                return web.json_response(openai_response.model_object(entry))
        return error_response(
            404, f"model: '{name}' is not served here; GET /v1/models lists the names", code="model_not_found"
        )

    async def chat_completions(self, http_request: web.Request) -> web.StreamResponse:
        entered = self._door(http_request)
        if isinstance(entered, web.StreamResponse):
            return entered
        with self._admission.inside(entered):
            return await self._chat_completions(http_request)

    async def responses(self, http_request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses API over the same answerer: the request becomes the chat call it means
        (api/responses_request.py), the answer a `response` object or its events (api/responses_response.py)."""
        entered = self._door(http_request)
        if isinstance(entered, web.StreamResponse):
            return entered
        with self._admission.inside(entered):
            return await self._responses(http_request)

    def _door(self, http_request: web.Request) -> Permit | web.StreamResponse | None:
        """Room for the gateway's own work on this request (routing/admission.py decides, from the caller and
        the x-gateway-priority header, before the body is read); 429 with Retry-After when saturated."""
        client = http_request.get(CLIENT_KEY, "")
        header = http_request.headers.get("x-gateway-priority", "").strip().lower()
        priority = {"urgent": Priority.URGENT, "bulk": Priority.BULK}.get(header, Priority.NORMAL)
        permit = self._admission.enter_door(client if isinstance(client, str) else "", priority)
        if isinstance(permit, Refusal):
            return gateway_error_response(self._admission.refuse(permit), self._clock())
        return permit

    async def _chat_completions(self, http_request: web.Request) -> web.StreamResponse:
        raw = await self._read_body(http_request)
        if isinstance(raw, web.Response):
            return raw
        try:
            call = self._convert(http_request, raw)
        except InvalidArgument as exc:
            return gateway_error_response(exc, self._clock())
        if call.stream:
            with self._admission.waiting():  # a stream's pace is its tiers' and its reader's
                return await self._stream(http_request, call)
        try:
            async with _deadline(call.request):
                result = await self._answerer.generate(call.request)
        except GatewayError as exc:
            return gateway_error_response(exc, self._clock())
        body = openai_response.completion_body(result, created=self._created(), top_logprobs=call.request.top_logprobs)
        return web.json_response(body, headers=openai_response.result_headers(result), dumps=_dumps)

    async def _responses(self, http_request: web.Request) -> web.StreamResponse:
        raw = await self._read_body(http_request)
        if isinstance(raw, web.Response):
            return raw
        try:
            body = _parse(raw)
            client = http_request.get(CLIENT_KEY, "")
            call = responses_request.responses_request(
                body,
                http_request.headers,
                request_id=openai_request.request_id(http_request.headers, self._new_id),
                default_max_tokens=self._default_max_tokens,
                now=time.monotonic(),
                client=client if isinstance(client, str) else "",
            )
        except InvalidArgument as exc:
            return gateway_error_response(exc, self._clock())
        if call.chat.stream:
            with self._admission.waiting():  # a stream's pace is its tiers' and its reader's
                return await self._stream_response(http_request, call)
        created = self._created()
        try:
            async with _deadline(call.chat.request):
                result = await self._answerer.generate(call.chat.request)
        except GatewayError as exc:
            return gateway_error_response(exc, self._clock())
        body = responses_response.response_body(call, result, created=created, completed=self._created())
        return web.json_response(body, headers=openai_response.result_headers(result), dumps=_dumps)

    # -- steps -------------------------------------------------------------------------------------

    async def _read_body(self, http_request: web.Request) -> bytes | web.Response:
        """The body's bytes, or the 415 / 413 that refuses it."""
        refused = self._check_body(http_request)
        if refused is not None:
            return refused
        try:
            return await http_request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._too_large()

    def _check_body(self, http_request: web.Request) -> web.Response | None:
        """415 for a body that is not JSON, 413 for one whose Content-Length is over the limit."""
        if http_request.content_type not in JSON_TYPES:
            given = http_request.headers.get("Content-Type", "(none)")
            return error_response(
                415, f"Content-Type: send application/json (got {given!r})", code="unsupported_media_type"
            )
        length = http_request.content_length
        if length is not None and length > self._max_request_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> web.Response:
        return error_response(
            413,
            f"body: over the limit of {self._max_request_bytes} bytes (server.max_request_bytes); "
            "send a smaller request",
            code="request_too_large",
        )

    def _convert(self, http_request: web.Request, raw: bytes) -> openai_request.ChatCall:
        try:
            body = json.loads(raw)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise openai_request.BadParam("body", f"not valid JSON ({_reason(exc)})") from None
        client = http_request.get(CLIENT_KEY, "")
        return openai_request.chat_request(
            body,
            http_request.headers,
            request_id=openai_request.request_id(http_request.headers, self._new_id),
            default_max_tokens=self._default_max_tokens,
            now=time.monotonic(),
            client=client if isinstance(client, str) else "",
        )

    async def _stream(self, http_request: web.Request, call: openai_request.ChatCall) -> web.StreamResponse:
        request, created = call.request, self._created()
        events = self._answerer.stream(request)
        response: web.StreamResponse | None = None
        try:
            async with _deadline(request):
                event = await _next(events)
                response = web.StreamResponse(headers=openai_response.stream_headers(request.request_id))
                await response.prepare(http_request)
                role = {"role": "assistant", "content": ""}
                await response.write(self._chunk(call, created, role))
                while event is not None:
                    if isinstance(event, Result):
                        for last in openai_response.final_chunks(
                            event, created=created, include_usage=call.include_usage, top_logprobs=request.top_logprobs
                        ):
                            await response.write(openai_response.sse(last))
                        break
                    if event.text:
                        await response.write(self._chunk(call, created, {"content": event.text}))
                    if event.tool_calls:
                        pieces = openai_response.tool_call_deltas(event.tool_calls)
                        await response.write(self._chunk(call, created, {"tool_calls": pieces}))
                    event = await _next(events)
                await response.write(openai_response.DONE)
        except GatewayError as exc:
            if response is None:
                return gateway_error_response(exc, self._clock())
            await response.write(openai_response.sse(gateway_error_body(exc)))
        finally:
            if isinstance(events, AsyncGenerator):
                await events.aclose()
        await response.write_eof()
        return response

    async def _stream_response(
        self, http_request: web.Request, call: responses_request.ResponsesCall
    ) -> web.StreamResponse:
        """The Responses events; as for chat, the headers wait for the answer's first event."""
        request = call.chat.request
        events = self._answerer.stream(request)
        out = responses_response.ResponseEvents(call, created=self._created())
        response: web.StreamResponse | None = None
        try:
            async with _deadline(request):
                event = await _next(events)
                response = web.StreamResponse(headers=openai_response.stream_headers(request.request_id))
                await response.prepare(http_request)
                for opening in out.opening():
                    await response.write(opening)
                while event is not None:
                    if isinstance(event, Result):
                        for closing in out.closing(event, completed=self._created()):
                            await response.write(closing)
                        break
                    if event.text:
                        await response.write(out.delta(event.text))
                    event = await _next(events)
        except GatewayError as exc:
            if response is None:
                return gateway_error_response(exc, self._clock())
            await response.write(out.error(exc))
        finally:
            if isinstance(events, AsyncGenerator):
                await events.aclose()
        await response.write_eof()
        return response

    def _chunk(self, call: openai_request.ChatCall, created: int, delta: dict[str, Any]) -> bytes:
        request = call.request
        return openai_response.sse(
            openai_response.chunk(
                request.request_id, created=created, model=request.model, delta=delta, include_usage=call.include_usage
            )
        )

    def _created(self) -> int:
        return int(self._clock().timestamp())


async def _next(events: AsyncIterator[Delta | Result]) -> Delta | Result | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


@contextlib.asynccontextmanager
async def _deadline(request: Request) -> AsyncIterator[None]:
    """Bound the work by the request's deadline; when it passes, DeadlineExceeded (504)."""
    remaining = request.remaining_s()
    if remaining is None:
        yield
        return
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout_at(loop.time() + remaining) as scope:
            yield
    except TimeoutError:
        if not scope.expired():
            raise
        raise DeadlineExceeded(
            "deadline passed before the answer was complete; raise x-gateway-timeout-ms or the client's timeout"
        ) from None


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise openai_request.BadParam("body", f"not valid JSON ({_reason(exc)})") from None


def _reason(exc: ValueError) -> str:
    return str(exc) if isinstance(exc, json.JSONDecodeError) else "the body is not UTF-8 text"


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
