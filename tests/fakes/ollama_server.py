"""A loopback stand-in for an Ollama server, speaking its real HTTP API to the official client.

Endpoints, in Ollama's own shapes: POST /api/chat (NDJSON stream by default,
one JSON object with "stream": false; `logprobs` + `top_logprobs` as Ollama
0.12.11+ returns them, or none at all when `logprobs_supported` is False, as
older servers do), HEAD/POST /api/blobs/<digest>, POST /api/create (`from` +
`adapters` blob digests, what a Modelfile FROM + ADAPTER becomes), GET /api/ps,
GET /api/tags, GET /api/version. Errors are {"error": "..."} with Ollama's
status codes. Knobs: per-model replies, a delay per token, queued HTTP faults;
counters: requests seen, streams the client dropped before the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

BASE_MODEL = "smollm2:135m"
DEFAULT_REPLY = "The trend is up"
TOKEN_LOGPROB = -0.10536051565782628  # p = 0.9 for every generated token
ALTERNATIVES = ("down", "flat", "sideways", "maybe", "no", "yes", "unclear", "higher", "lower", "neutral")
DETAILS = {
    "parent_model": "",
    "format": "gguf",
    "family": "llama",
    "families": ["llama"],
    "parameter_size": "134.52M",
    "quantization_level": "Q4_1",
}


@dataclass
class FakeModel:
    name: str
    reply: str
    parent: str = ""
    adapters: dict[str, str] = field(default_factory=dict)  # file name -> blob digest
    digest: str = ""


@dataclass
class ChatSeen:
    model: str
    body: dict[str, Any]


@dataclass
class FakeOllama:
    """Start with `await fake.start()`; point the client at `fake.host`."""

    logprobs_supported: bool = True
    token_delay_s: float = 0.0
    models: dict[str, FakeModel] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    chats: list[ChatSeen] = field(default_factory=list)
    creates: list[dict[str, Any]] = field(default_factory=list)
    loaded: dict[str, datetime] = field(default_factory=dict)  # model -> expires_at (what /api/ps lists)
    dropped_streams: int = 0  # chat streams the client closed before the final part
    active_streams: int = 0
    adapter_reply: str = "up"
    json_reply: str = '{"signal": "sell", "size": 0.2}'  # the answer under `format` (a JSON schema or "json")
    _faults: list[tuple[int, str]] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0

    def __post_init__(self) -> None:
        self.models.setdefault(BASE_MODEL, FakeModel(BASE_MODEL, DEFAULT_REPLY, digest=_digest(BASE_MODEL.encode())))

    # -- knobs ------------------------------------------------------------------------------

    def fail_next_chat(self, status: int, message: str) -> None:
        self._faults.append((status, message))

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> FakeOllama:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/chat", self._chat)
        app.router.add_route("HEAD", "/api/blobs/{digest}", self._blob_head)
        app.router.add_post("/api/blobs/{digest}", self._blob_upload)
        app.router.add_post("/api/create", self._create)
        app.router.add_get("/api/ps", self._ps)
        app.router.add_get("/api/tags", self._tags)
        app.router.add_get("/api/version", self._version)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- /api/chat ---------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = str(body.get("model", ""))
        self.chats.append(ChatSeen(name, body))
        if self._faults:
            status, message = self._faults.pop(0)
            return _error(status, message)
        model = self._find(name)
        if model is None:
            return _error(404, f'model "{name}" not found, try pulling it first')
        if not body.get("messages"):
            return _error(400, "messages are required")
        self._mark_loaded(model.name, body.get("keep_alive"))
        options = body.get("options") or {}
        limit = int(options.get("num_predict", -1))
        reply = self.json_reply if body.get("format") else model.reply  # `format`: Ollama decodes JSON only
        hits = [reply.find(stop) for stop in options.get("stop") or () if stop and stop in reply]
        if hits:  # options.stop: the answer ends before the first of them, done_reason "stop"
            reply = reply[: min(hits)]
        pieces = _pieces(reply)
        finished = "stop"
        if 0 <= limit < len(pieces):
            pieces, finished = pieces[:limit], "length"
        with_logprobs = self.logprobs_supported and bool(body.get("logprobs"))
        top_n = int(body.get("top_logprobs") or 0)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 4 for m in body["messages"])
        final: dict[str, Any] = {
            "model": model.name,
            "created_at": _now(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": finished,
            "total_duration": 1_000_000,
            "load_duration": 1_000,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": 100_000,
            "eval_count": len(pieces),
            "eval_duration": 900_000,
        }
        if body.get("stream", True) is False:
            await asyncio.sleep(self.token_delay_s * len(pieces))
            final["message"] = {"role": "assistant", "content": "".join(pieces)}
            if with_logprobs:
                final["logprobs"] = [_logprob(p, top_n) for p in pieces]
            return _json(final)
        return await self._stream(request, model.name, pieces, with_logprobs, top_n, final)

    async def _stream(
        self,
        request: web.Request,
        model: str,
        pieces: list[str],
        with_logprobs: bool,
        top_n: int,
        final: dict[str, Any],
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        self.active_streams += 1
        try:
            for piece in pieces:
                if self.token_delay_s:
                    await asyncio.sleep(self.token_delay_s)
                part: dict[str, Any] = {
                    "model": model,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": piece},
                    "done": False,
                }
                if with_logprobs:
                    part["logprobs"] = [_logprob(piece, top_n)]
                await response.write((json.dumps(part) + "\n").encode())
            await response.write((json.dumps(final) + "\n").encode())
            await response.write_eof()
        except ConnectionResetError:
            self.dropped_streams += 1  # the client closed the stream: stop generating, as Ollama does
        except asyncio.CancelledError:
            self.dropped_streams += 1
            raise
        finally:
            self.active_streams -= 1
        return response

    # -- models -----------------------------------------------------------------------------------

    async def _blob_head(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if request.match_info["digest"] in self.blobs else 404)

    async def _blob_upload(self, request: web.Request) -> web.Response:
        digest = request.match_info["digest"]
        data = await request.read()
        if _digest(data) != digest:
            return _error(400, "digest mismatch")
        self.blobs[digest] = data
        return web.Response(status=201)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.creates.append(body)
        name = _normalise(str(body.get("model", "")))
        base = self._find(str(body.get("from", "")))
        if not name:
            return _error(400, "name is required")
        if base is None:
            return _error(404, f'base model "{body.get("from")}" not found')
        adapters = dict(body.get("adapters") or {})
        missing = [d for d in adapters.values() if d not in self.blobs]
        if missing:
            return _error(400, f"missing blob {missing[0]}")
        reply = self.adapter_reply if adapters else base.reply
        self.models[name] = FakeModel(name, reply, base.name, adapters, _digest(json.dumps(body).encode()))
        statuses = [*(f"using existing layer {d}" for d in adapters.values()), "writing manifest", "success"]
        if body.get("stream", True) is False:
            return _json({"status": "success"})
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for status in statuses:
            await response.write((json.dumps({"status": status}) + "\n").encode())
        await response.write_eof()
        return response

    async def _ps(self, _: web.Request) -> web.Response:
        now = datetime.now(UTC)
        self.loaded = {name: until for name, until in self.loaded.items() if until > now}
        rows = [
            {
                "name": name,
                "model": name,
                "size": 270_000_000,
                "digest": self.models[name].digest,
                "details": DETAILS,
                "expires_at": until.isoformat().replace("+00:00", "Z"),
                "size_vram": 0,
                "context_length": 2048,
            }
            for name, until in self.loaded.items()
            if name in self.models
        ]
        return _json({"models": rows})

    async def _tags(self, _: web.Request) -> web.Response:
        rows = [
            {
                "name": m.name,
                "model": m.name,
                "modified_at": _now(),
                "size": 100_000_000,
                "digest": m.digest,
                "details": DETAILS,
            }
            for m in self.models.values()
        ]
        return _json({"models": rows})

    async def _version(self, _: web.Request) -> web.Response:
        return _json({"version": "0.13.0"})

    def _find(self, name: str) -> FakeModel | None:
        return self.models.get(_normalise(name))

    def _mark_loaded(self, name: str, keep_alive: Any) -> None:
        seconds = _seconds(keep_alive)
        if seconds == 0:
            self.loaded.pop(name, None)
            return
        until = datetime.now(UTC) + timedelta(seconds=seconds if seconds > 0 else 10 * 365 * 86400)
        self.loaded = {name: until}  # one model resident at a time, as with OLLAMA_MAX_LOADED_MODELS=1


def _pieces(text: str) -> list[str]:
    """Tokens as a real tokenizer makes them: words with their leading space."""
    return re.findall(r"\s*\S+", text) or [""]


def _logprob(piece: str, top_n: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"token": piece, "logprob": TOKEN_LOGPROB, "bytes": list(piece.encode())}
    if top_n > 0:
        lead = " " if piece.startswith(" ") else ""
        others = [lead + alt for alt in ALTERNATIVES if lead + alt != piece]
        top = [{"token": piece, "logprob": TOKEN_LOGPROB, "bytes": list(piece.encode())}]
        top += [{"token": alt, "logprob": -2.5 - i, "bytes": list(alt.encode())} for i, alt in enumerate(others)]
        entry["top_logprobs"] = top[:top_n]
    return entry


def _seconds(keep_alive: Any) -> float:
    if keep_alive is None:
        return 300.0
    if isinstance(keep_alive, int | float):
        return float(keep_alive)
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)([smh]?)", str(keep_alive))
    if not match:
        return 300.0
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


def _normalise(name: str) -> str:
    return name if ":" in name or not name else f"{name}:latest"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _json(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)
