"""Ollama as the local tier, through the official `ollama` AsyncClient.

Calls stream /api/chat with `logprobs` and `top_logprobs` (Ollama 0.12.11 and
later return them). Fallback, flagged: a server that returns no logprobs gives
answers with no token logprobs, so the gateway's confidence is None and the
answer is kept (never escalated for low confidence); a warning is logged once,
`logprobs_missing` turns true, and `require_logprobs = true` makes such an
answer an error instead (it then escalates as "local_error").

A LoRA adapter is served as its own Ollama model "<name>:<version>", created on
first use from the equivalent of a Modelfile `FROM <base>` + `ADAPTER <path>`:
the adapter's files are uploaded as blobs and /api/create gets `from` and
`adapters` (the request the Ollama CLI sends for such a Modelfile).
Capacity comes from the in-flight count and /api/ps (is the model resident, or
will the next call pay its load time?), read in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.core.contracts import (
    AdapterRef,
    BackendCall,
    Completion,
    Delta,
    LocalLoad,
    StreamEvent,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import BackendError, CapacityExceeded, GatewayError
from gateway.core.structured import schema_of
from local_models.http_backend import HttpBackendRuntime, budget, ewma
from local_models.http_errors import connect_error, status_error, timeout_error
from local_models.streams import completion_of

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
START_HINT = "start Ollama (`ollama serve`) or fix [local.ollama] host"


@dataclass(frozen=True, slots=True)
class OllamaSettings:
    host: str
    model: str  # the base model's name in Ollama
    keep_alive: str = "5m"
    timeout_s: float = 60.0
    max_in_flight: int = 4
    parallel: int = 1  # OLLAMA_NUM_PARALLEL: requests the server decodes at once
    top_logprobs: int = 5
    label_top_logprobs: int = 20
    require_logprobs: bool = False
    context_length: int = 2048
    ps_poll_s: float = 5.0


def adapter_model_name(ref: AdapterRef) -> str:
    """The Ollama model an adapter version is served as (Ollama's name:tag)."""
    return f"{ref.name}:{ref.version}"


def modelfile(base: str, adapter_path: str) -> str:
    """The Modelfile an adapter model is equivalent to (for `ollama create -f` on another box)."""
    return f"FROM {base}\nADAPTER {adapter_path}\n"


def keep_alive_value(raw: str) -> str | float:
    """Ollama takes a duration ("5m") or seconds as a number (-1: keep loaded)."""
    try:
        return float(raw)
    except ValueError:
        return raw


@dataclass(frozen=True, slots=True)
class Residency:
    """What /api/ps last said: the models loaded in memory."""

    at: float
    models: frozenset[str]
    error: str = ""


class OllamaBackend:
    """`LocalBackend` over an Ollama server."""

    name = "ollama"
    supports_tools = False  # tools and tool turns go to the remote tier (gateway/routing/policy.py)
    constrains_json = True  # response_format: Ollama's `format` takes the JSON schema (gateway/core/structured.py)

    def __init__(self, settings: OllamaSettings, *, client: Any = None) -> None:
        if client is None:
            import ollama

            client = ollama.AsyncClient(host=settings.host, timeout=settings.timeout_s)
        self._client = client
        self._settings = settings
        self.model = settings.model
        self.context_length = settings.context_length
        self._avg_load_s = 0.0
        self._residency: Residency | None = None
        self._runtime = HttpBackendRuntime("ollama", settings.max_in_flight, self._poll, settings.ps_poll_s)
        self._models: set[str] = set()  # adapter models known to exist on the server
        self._locks: dict[str, asyncio.Lock] = {}
        self.logprobs_missing = False  # the fallback is in use: answers carry no logprobs

    # -- LocalBackend ---------------------------------------------------------------------

    def load(self) -> LocalLoad:
        runtime = self._runtime
        runtime.start_poller()
        s = self._settings
        waiting = max(0, runtime.in_flight - s.parallel + 1)
        est = waiting / s.parallel * runtime.avg_request_s
        residency = self._residency
        if residency is not None and not residency.error and not _resident(self.model, residency.models):
            est += self._avg_load_s  # the next call loads the model first
        return LocalLoad(
            runtime.in_flight, s.max_in_flight, est, est_prefill_s=runtime.avg_first_s, est_step_s=runtime.avg_token_s
        )

    @property
    def residency(self) -> Residency | None:
        return self._residency

    async def generate(self, call: BackendCall) -> Completion:
        return await completion_of(self.stream(call), "ollama")

    def stream(self, call: BackendCall) -> AsyncGenerator[StreamEvent, None]:
        return self._runtime.stream(call, self._stream)

    async def aclose(self) -> None:
        await self._runtime.aclose()
        close = getattr(self._client, "close", None)
        if close is not None:
            await close()

    # -- adapters -------------------------------------------------------------------------

    async def ensure_adapter(self, ref: AdapterRef) -> str:
        """The adapter's Ollama model name, creating it from base + adapter files when missing."""
        name = adapter_model_name(ref)
        if name in self._models:
            return name
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._models:
                return name
            listed = await self._client.list()
            if not any(_same_model(name, m.model or "") for m in listed.models):
                await self._create(name, ref)
            self._models.add(name)
        return name

    async def _create(self, name: str, ref: AdapterRef) -> None:
        folder = Path(ref.path)
        files = [folder / f for f in ADAPTER_FILES if (folder / f).is_file()]
        if not files:
            raise BackendError(f"ollama: adapter {ref.name}@{ref.version} has no {ADAPTER_FILES[0]} in {folder}")
        started = time.monotonic()
        digests = {file.name: await self._client.create_blob(file) for file in files}
        progress = await self._client.create(model=name, from_=self.model, adapters=digests, stream=False)
        if getattr(progress, "status", "success") != "success":
            raise BackendError(f"ollama could not create {name}: {progress.status}")
        log.info(
            "ollama created %s (%s) in %.2f s",
            name,
            modelfile(self.model, str(folder)).replace("\n", "; "),
            time.monotonic() - started,
        )

    # -- the request path -------------------------------------------------------------------

    async def _stream(self, call: BackendCall) -> AsyncGenerator[StreamEvent, None]:
        import ollama

        s = self._settings
        budget_s, deadline = budget(call, s.timeout_s)
        produced = False
        for attempt in (1, 2):
            model = self.model
            try:
                async with asyncio.timeout_at(deadline):
                    model = await self.ensure_adapter(call.adapter) if call.adapter is not None else self.model
                async with contextlib.aclosing(self._chat(call, model, deadline)) as events:
                    async for event in events:
                        produced = True
                        yield event
                return
            except ollama.ResponseError as exc:
                if exc.status_code == 404 and call.adapter is not None and attempt == 1 and not produced:
                    self._models.discard(model)  # deleted on the server: create it again, once
                    continue
                raise _response_error(exc) from exc
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise timeout_error("ollama", call.deadline, budget_s) from exc
            except (httpx.TransportError, ConnectionError) as exc:
                raise connect_error("ollama", s.host, START_HINT, exc) from exc

    async def _chat(self, call: BackendCall, model: str, deadline: float) -> AsyncGenerator[StreamEvent, None]:
        """One /api/chat stream -> Delta pieces, then the Completion from the final (done) part."""
        s = self._settings
        parts = await self._client.chat(
            model=model,
            messages=[{"role": m.role.value, "content": m.content} for m in call.messages],
            stream=True,
            logprobs=True,
            top_logprobs=s.label_top_logprobs if call.labels or call.response_format else s.top_logprobs,
            options=_options(call, s.context_length),
            keep_alive=keep_alive_value(s.keep_alive),
            format=None if call.response_format is None else schema_of(call.response_format),
        )
        text = ""
        tokens: list[TokenLogprob] = []
        async with contextlib.aclosing(parts):  # closing drops the connection: Ollama stops generating
            while True:
                async with asyncio.timeout_at(deadline):  # never spans a yield
                    part = await anext(parts, None)
                if part is None:
                    raise BackendError("ollama closed the stream before the answer finished", retryable=True)
                piece = part.message.content or ""
                tokens.extend(_tokens(part.logprobs))
                if piece:
                    text += piece
                    yield Delta(piece)
                if part.done:
                    yield self._completion(call, model, text, tokens, part)
                    return

    def _completion(
        self, call: BackendCall, model: str, text: str, tokens: list[TokenLogprob], last: Any
    ) -> Completion:
        if not tokens and text:
            if self._settings.require_logprobs:
                raise BackendError(
                    "ollama returned no logprobs (server older than 0.12.11?) and [local.ollama] require_logprobs "
                    "is true; upgrade Ollama or set require_logprobs = false to accept answers without confidence"
                )
            if not self.logprobs_missing:
                log.warning(
                    "ollama at %s returns no logprobs (older than 0.12.11?): local confidence is None, so answers "
                    "are kept and never escalated for low confidence; upgrade Ollama to get confidence",
                    self._settings.host,
                )
            self.logprobs_missing = True
        load_s = (last.load_duration or 0) / 1e9
        if load_s > 0.05:  # a cold load, not the few milliseconds a resident model reports
            self._avg_load_s = ewma(self._avg_load_s, load_s)
        return Completion(
            text=text,
            provider=self.name,
            model=call.adapter.name if call.adapter is not None else model,
            usage=Usage(int(last.prompt_eval_count or 0), int(last.eval_count or len(tokens))),
            finish_reason=str(last.done_reason or "stop"),
            tokens=tuple(tokens),
        )

    # -- background: /api/ps -----------------------------------------------------------------

    async def _poll(self) -> None:
        self._residency = await self.read_residency()

    async def read_residency(self) -> Residency:
        """One reading of /api/ps."""
        import ollama

        try:
            reply = await self._client.ps()
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            return Residency(time.monotonic(), frozenset(), f"{type(exc).__name__}: {exc}")
        return Residency(time.monotonic(), frozenset(m.model or m.name or "" for m in reply.models))


def _tokens(logprobs: Sequence[Any] | None) -> list[TokenLogprob]:
    tokens = []
    for entry in logprobs or ():
        top: Mapping[str, float] = {alt.token: float(alt.logprob) for alt in entry.top_logprobs or ()}
        tokens.append(TokenLogprob(entry.token, float(entry.logprob), top))
    return tokens


def _response_error(exc: Any) -> GatewayError:
    status = int(exc.status_code) if exc.status_code and exc.status_code > 0 else 500
    if status == 503:  # Ollama answers 503 when its queue (OLLAMA_MAX_QUEUE) is full
        return CapacityExceeded(f"ollama is at capacity (HTTP 503): {exc.error}")
    return status_error("ollama", status, str(exc.error))


def _same_model(wanted: str, listed: str) -> bool:
    return listed == wanted or listed.removesuffix(":latest") == wanted


def _resident(model: str, models: frozenset[str]) -> bool:
    return any(_same_model(model, listed) for listed in models)


def _options(call: BackendCall, context_length: int) -> dict[str, Any]:
    """Ollama's per-request options; `stop` ends the answer before the first sequence, which it leaves out."""
    options: dict[str, Any] = {
        "num_predict": call.max_tokens,
        "temperature": max(call.temperature, 0.0),
        "num_ctx": context_length,
    }
    if call.stop:
        options["stop"] = list(call.stop)
    return options
