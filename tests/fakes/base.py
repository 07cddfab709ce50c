"""A loopback HTTP stand-in for a provider API, with fault knobs and a request counter.

Each provider's wire format lives in a subclass; this base owns the server
lifecycle and the faults: an HTTP status (with Retry-After), added latency, a
connection reset mid-body and a malformed JSON body; for streams also a reset,
a frame that is not SSE, or a stall after a given number of frames (the
stand-in's first frame carries no text, its second the first piece).
`prompt_cache_min` turns on implicit prompt caching as OpenAI, xAI and Gemini do it:
the leading tokens a prompt shares with an earlier one (at least that many) are
reported as cached, in each provider's own usage fields. Faults queued with
`fail()` apply to the next requests in order; `always()` sets one for every
request after the queue is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Fault:
    status: int = 0  # 0: answer normally
    retry_after: str | None = None  # Retry-After header value sent with `status`
    delay_s: float = 0.0  # added before answering
    reset_mid_body: bool = False  # send headers and half the body, then drop the connection
    malformed_json: bool = False  # 200 with a truncated JSON body
    reset_after_frames: int = 0  # stream: send this many frames, then drop the connection (0: off)
    garbage_after_frames: int = 0  # stream: send this many frames, then one that is not JSON, then the rest (0: off)
    stall_after_frames: int = 0  # stream: send this many frames, then nothing until the stand-in stops (0: off)


NO_FAULT = Fault()


@dataclass
class Seen:
    """What one request looked like, for assertions."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Reply:
    text: str = "The trend is up"
    model: str = ""  # empty: echo the requested model
    # (name, arguments as JSON text): a request that offers tools is answered with these calls, in the
    # provider's own tool-call format (each stand-in's `tool_answer`), instead of the text
    tool_calls: tuple[tuple[str, str], ...] = ()

    def pieces(self) -> list[str]:
        return pieces_of(self.text)

    def until(self, stop: Any) -> tuple[str, str | None]:
        """The reply up to the first of the stop sequences (a string or a list, as the request sent them), and
        the sequence that ended it (None: none did), as a provider's server applies them."""
        sequences = [stop] if isinstance(stop, str) else [s for s in stop or () if isinstance(s, str)]
        hits = sorted((self.text.find(s), s) for s in sequences if s and s in self.text)
        if not hits:
            return self.text, None
        index, sequence = hits[0]
        return self.text[:index], sequence


def pieces_of(text: str) -> list[str]:
    """The stand-ins' tokens: words with their trailing space."""
    return re.findall(r"\S+\s*", text) or [""]


@dataclass
class FakeProviderServer:
    """Base class: subclasses implement `route()`, `completion()`, `stream_frames()`, `error_body()`."""

    reply: Reply = field(default_factory=Reply)
    seen: list[Seen] = field(default_factory=list)
    last_usage: tuple[int, int] = (0, 0)
    streams_abandoned: int = 0  # stalled streams whose caller hung up
    prompt_cache_min: int = 0  # implicit prompt caching: the fewest shared leading tokens reported cached; 0 = off
    _prompts: list[tuple[str, ...]] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    _always: Fault = NO_FAULT
    _runner: web.AppRunner | None = None
    _port: int = 0
    _stopping: asyncio.Event | None = None

    # -- knobs ---------------------------------------------------------------------------

    def fail(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def always(self, fault: Fault) -> None:
        self._always = fault

    @property
    def requests(self) -> int:
        return len(self.seen)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> FakeProviderServer:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, shutdown_timeout=1.0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()  # cut short any added latency still running
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeProviderServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- wire format (subclasses) -------------------------------------------------------------

    def route(self, request: web.Request, body: dict[str, Any]) -> tuple[bool, str] | None:
        """(is_stream, model) when the path is this provider's generation endpoint, else None."""
        raise NotImplementedError

    def completion(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        raise NotImplementedError

    def stream_frames(self, body: dict[str, Any], model: str) -> list[str]:
        raise NotImplementedError

    def error_body(self, status: int) -> dict[str, Any]:
        raise NotImplementedError

    def rejects(self, body: dict[str, Any]) -> bool:
        """Whether the provider would refuse this body as malformed (a 400); subclasses say when."""
        return False

    def prompt_tokens(self, texts: list[str]) -> int:
        """The stand-in's tokenizer: one token per word, plus 3 per message."""
        return sum(len(text.split()) + 3 for text in texts)

    def cached_prefix(self, texts: list[str]) -> int:
        """Implicit caching: how many leading tokens of this prompt (its texts in order, by `prompt_tokens`'s
        count) an earlier prompt shared, when at least `prompt_cache_min`; remembers this prompt."""
        if not self.prompt_cache_min:
            return 0
        tokens = tuple(token for text in texts for token in [*text.split(), "<m>", "<m>", "<m>"])
        shared = 0
        for earlier in self._prompts:
            common = next((i for i, (a, b) in enumerate(zip(earlier, tokens, strict=False)) if a != b), None)
            shared = max(shared, min(len(earlier), len(tokens)) if common is None else common)
        self._prompts.append(tokens)
        return shared if shared >= self.prompt_cache_min else 0

    # -- handler -------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        self.seen.append(Seen(request.path_qs, dict(request.headers), body))
        routed = self.route(request, body)
        if routed is None:
            return web.json_response(self.error_body(404), status=404)
        is_stream, model = routed
        if self.rejects(body):
            return web.json_response(self.error_body(400), status=400)
        fault = self._faults.pop(0) if self._faults else self._always
        if fault.delay_s and self._stopping is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), fault.delay_s)
        if fault.status:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return web.json_response(self.error_body(fault.status), status=fault.status, headers=headers)
        if is_stream:
            return await self._stream(request, body, model, fault)
        payload = json.dumps(self.completion(body, model)).encode()
        if fault.malformed_json:
            return web.Response(body=payload[: len(payload) // 2], content_type="application/json")
        if fault.reset_mid_body:
            return await self._reset(request, payload, "application/json")
        return web.Response(body=payload, content_type="application/json")

    async def _stream(self, request: web.Request, body: dict[str, Any], model: str, fault: Fault) -> web.StreamResponse:
        frames = self.stream_frames(body, model)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for index, frame in enumerate(frames):
            if (fault.reset_mid_body and index == max(1, len(frames) // 2)) or index == fault.reset_after_frames > 0:
                _drop(request)
                return response
            if index == fault.stall_after_frames > 0:
                await self._stall(request)
                return response
            if index == fault.garbage_after_frames > 0:
                await response.write(b'data: {"choices": [{"delta": <not json>\n\n')
            data = frame if not (fault.malformed_json and index == 1) else frame[: len(frame) // 2] + "\n\n"
            await response.write(data.encode())
        await response.write_eof()
        return response

    async def _stall(self, request: web.Request) -> None:
        """Send nothing more until the caller hangs up (counted in `streams_abandoned`) or the stand-in stops."""
        while self._stopping is not None and not self._stopping.is_set():
            if request.transport is None or request.transport.is_closing():
                self.streams_abandoned += 1
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), 0.05)

    async def _reset(self, request: web.Request, payload: bytes, content_type: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type, "Content-Length": str(len(payload))})
        await response.prepare(request)
        await response.write(payload[: len(payload) // 2])
        _drop(request)
        return response


def _drop(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()


def sse(data: dict[str, Any], event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"
