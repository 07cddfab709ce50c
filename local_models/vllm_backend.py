"""vLLM as the local tier: its OpenAI-compatible HTTP API through one pooled httpx client.

Every call streams /v1/chat/completions with logprobs and top_logprobs, so
`generate` and `stream` share one path and closing the stream closes the HTTP
connection, which makes vLLM abort the request (client gone, deadline passed,
gRPC call cancelled). A LoRA adapter is chosen per request by model name
("<name>@<version>"); an adapter vLLM does not serve yet is loaded at run time
through POST /v1/load_lora_adapter. /health and /metrics are read by a
background task, never on the request path, and `load()` turns the latest
reading into the LocalLoad the capacity policy uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx

from gateway.core.contracts import AdapterRef, BackendCall, Completion, Delta, LocalLoad, StreamEvent
from gateway.core.errors import BackendError
from gateway.core.openai_wire import ChunkAccumulator, chat_body, parse_sse_line
from local_models.http_backend import HttpBackendRuntime, budget
from local_models.http_errors import connect_error, retry_after, status_error, timeout_error
from local_models.streams import completion_of
from local_models.vllm_metrics import VllmSnapshot, parse_metrics, to_local_load

log = logging.getLogger(__name__)

START_HINT = "start it with `make serve-vllm`, or set [local.vllm] supervise = true"
STARTING_PROBE_TIMEOUT_S = 1.0  # /health wait once vLLM was down: a starting server accepts, then says nothing


@dataclass(frozen=True, slots=True)
class VllmSettings:
    base_url: str
    model: str  # vLLM's --served-model-name of the base model
    api_key: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 3.0
    max_in_flight: int = 64
    top_logprobs: int = 5
    label_top_logprobs: int = 20
    metrics_poll_s: float = 0.1
    metrics_stale_s: float = 0.3
    max_waiting: int = 5
    kv_cache_full: float = 0.8
    context_length: int = 2048


class Stoppable(Protocol):
    """A supervised vLLM process the backend stops when it closes (local_models/vllm_server.py)."""

    def stop(self) -> None: ...


def lora_name(ref: AdapterRef) -> str:
    """The model name vLLM serves an adapter version under (also what `--lora-modules` gets)."""
    return f"{ref.name}@{ref.version}"


class VllmBackend:
    """`LocalBackend` over a vLLM server (CPU build here, GPU build on GPU boxes)."""

    name = "vllm"
    supports_tools = False  # tools and tool turns go to the remote tier (gateway/routing/policy.py)
    constrains_json = True  # response_format: vLLM's structured outputs (gateway/core/structured.py)

    def __init__(
        self,
        settings: VllmSettings,
        *,
        supervisor: Stoppable | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = settings
        self.model = settings.model
        self.context_length = settings.context_length
        self._supervisor = supervisor
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        pool = settings.max_in_flight + 4  # the poller and adapter loads need connections too
        self._client = httpx.AsyncClient(
            base_url=settings.base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(settings.timeout_s, connect=settings.connect_timeout_s),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
            transport=transport,
        )
        self._snapshot: VllmSnapshot | None = None
        self._runtime = HttpBackendRuntime(
            "vllm", settings.max_in_flight, self._poll, settings.metrics_poll_s, check=self._check_health
        )
        self._served: set[str] | None = None  # model names vLLM serves (base + adapters); None: not read yet
        self._adapter_locks: dict[str, asyncio.Lock] = {}

    # -- LocalBackend ---------------------------------------------------------------------

    def load(self) -> LocalLoad:
        self._runtime.start_poller()
        now = time.monotonic()
        return to_local_load(
            self._snapshot,
            own_in_flight=self._runtime.in_flight,
            max_in_flight=self._settings.max_in_flight,
            avg_request_s=self._runtime.avg_request_s,
            kv_cache_full=self._settings.kv_cache_full,
            max_waiting=self._settings.max_waiting,
            now=now,
            stale_after_s=self.stale_after_s,
        )

    @property
    def stale_after_s(self) -> float:
        """How old a reading may be before it counts as unknown: metrics_stale_s, and never under three polls
        (a reading cannot be fresher than the poll that took it)."""
        return max(self._settings.metrics_stale_s, 3 * self._settings.metrics_poll_s)

    @property
    def snapshot(self) -> VllmSnapshot | None:
        """The latest /health + /metrics reading (None before the first one)."""
        return self._snapshot

    async def generate(self, call: BackendCall) -> Completion:
        return await completion_of(self.stream(call), "vllm")

    def stream(self, call: BackendCall) -> AsyncGenerator[StreamEvent, None]:
        return self._runtime.stream(call, self._stream)

    async def aclose(self) -> None:
        await self._runtime.aclose()
        await self._client.aclose()
        if self._supervisor is not None:
            await asyncio.to_thread(self._supervisor.stop)

    # -- adapters -------------------------------------------------------------------------

    async def served_models(self) -> set[str]:
        """Names vLLM serves now: the base model and every loaded adapter (GET /v1/models)."""
        response = await self._request("GET", "/v1/models")
        self._served = {str(entry["id"]) for entry in response.json().get("data", [])}
        return set(self._served)

    async def ensure_adapter(self, ref: AdapterRef) -> str:
        """The model name to ask for; loads the adapter version into vLLM first when it lacks it."""
        name = lora_name(ref)
        if self._served is not None and name in self._served:
            return name
        lock = self._adapter_locks.setdefault(name, asyncio.Lock())
        async with lock:
            if self._served is None or name not in self._served:
                await self.served_models()
            if self._served is not None and name not in self._served:
                await self._load_adapter(name, ref.path)
        return name

    async def _load_adapter(self, name: str, path: str) -> None:
        started = time.monotonic()
        body = {"lora_name": name, "lora_path": path}
        try:
            response = await self._client.post("/v1/load_lora_adapter", json=body)
        except httpx.TransportError as exc:
            raise connect_error("vllm", self._settings.base_url, START_HINT, exc) from exc
        text = response.text
        if response.status_code == 404 and '"detail"' in text:  # FastAPI's own 404: the route is not there
            raise BackendError(
                "vllm does not accept adapters at run time: start it with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True "
                "(make serve-vllm does), or list the adapter at start with --lora-modules"
            )
        if response.status_code >= 400 and "already been loaded" not in text:
            raise BackendError(
                f"vllm could not load adapter {name} from {path}: HTTP {response.status_code}: {_error_text(text)}"
            )
        if self._served is not None:
            self._served.add(name)
        log.info("vllm loaded adapter %s from %s in %.2f s", name, path, time.monotonic() - started)

    # -- the request path -------------------------------------------------------------------

    def _check_health(self) -> None:
        """Admission after the in-flight limit and the deadline: refuse while the latest reading is unhealthy."""
        snap = self._snapshot
        if snap is not None and not snap.healthy and time.monotonic() - snap.at < 3 * self._settings.metrics_poll_s:
            raise BackendError(f"vllm at {self._settings.base_url} is not healthy: {snap.error}", retryable=True)

    async def _stream(self, call: BackendCall) -> AsyncGenerator[StreamEvent, None]:
        budget_s, deadline = budget(call, self._settings.timeout_s)
        response: httpx.Response | None = None
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._open(call)
            model = call.adapter.name if call.adapter is not None else self.model
            async with contextlib.aclosing(
                self._read(response, ChunkAccumulator(self.name, model, keep_model=True), deadline)
            ) as events:
                async for event in events:
                    yield event
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise timeout_error("vllm", call.deadline, budget_s) from exc
        except httpx.TransportError as exc:
            raise connect_error("vllm", self._settings.base_url, START_HINT, exc) from exc
        except json.JSONDecodeError as exc:
            raise BackendError(f"vllm sent a chunk that is not JSON: {exc}", retryable=True) from exc
        finally:
            if response is not None:
                await response.aclose()  # mid-stream this drops the connection: vLLM aborts the request

    async def _read(
        self, response: httpx.Response, reader: ChunkAccumulator, deadline: float
    ) -> AsyncGenerator[StreamEvent, None]:
        """Server-sent chunks -> Delta pieces, then the Completion once the stream has ended."""
        lines = response.aiter_lines()
        while True:
            async with asyncio.timeout_at(deadline):  # never spans a yield
                line = await anext(lines, None)
            if line is None:
                break
            chunk = parse_sse_line(line)
            if chunk is None:
                continue
            _raise_stream_error(chunk)
            piece = reader.add(chunk)
            if piece:
                yield Delta(piece)
        if not reader.finish_reason:
            raise BackendError("vllm closed the stream before the answer finished", retryable=True)
        yield reader.completion()

    async def _open(self, call: BackendCall) -> httpx.Response:
        """Send the request and return the streaming response once its status is 200."""
        for attempt in (1, 2):
            model = await self.ensure_adapter(call.adapter) if call.adapter is not None else self.model
            # label and structured calls: wide alternatives, so the labels' (enum values') first tokens are among them
            wide = call.labels or call.response_format is not None
            top = self._settings.label_top_logprobs if wide else self._settings.top_logprobs
            body = chat_body(call, model, top_logprobs=top, stream=True)
            request = self._client.build_request("POST", "/v1/chat/completions", json=body)
            response = await self._client.send(request, stream=True)
            if response.status_code == 200:
                return response
            text = (await response.aread()).decode(errors="replace")
            await response.aclose()
            if response.status_code == 404 and call.adapter is not None and attempt == 1 and self._served:
                self._served.discard(model)  # vLLM restarted without it: load it again, once
                continue
            wait = retry_after(response.headers.get("retry-after"))
            raise status_error("vllm", response.status_code, _error_text(text), retry_after_s=wait)
        raise BackendError("vllm: unreachable")  # the loop always returns or raises

    async def _request(self, method: str, path: str) -> httpx.Response:
        try:
            response = await self._client.request(method, path)
        except httpx.TransportError as exc:
            raise connect_error("vllm", self._settings.base_url, START_HINT, exc) from exc
        if response.status_code >= 400:
            raise status_error("vllm", response.status_code, _error_text(response.text))
        return response

    # -- background: /health and /metrics -----------------------------------------------------

    async def _poll(self) -> None:
        previous = self._snapshot
        down = previous is not None and not previous.healthy
        reading = await self.read_state(timeout_s=STARTING_PROBE_TIMEOUT_S if down else None)
        if reading is None:
            if previous is not None and down:
                # Down before and silent now: starting (vLLM listens before its engine is up), not busy.
                self._snapshot = replace(previous, at=time.monotonic())
            return  # too busy to answer: keep the last reading (it goes stale after 5 polls)
        self._snapshot = reading
        if reading.healthy and (previous is None or not previous.healthy):
            self._served = None  # (re)started: it may have lost adapters loaded at run time
            if previous is not None:
                log.warning("vllm at %s is healthy again", self._settings.base_url)
        elif not reading.healthy and (previous is None or previous.healthy):
            log.warning("vllm at %s is not healthy: %s", self._settings.base_url, reading.error)

    async def read_state(self, timeout_s: float | None = None) -> VllmSnapshot | None:
        """One reading of /health and /metrics; None when vLLM was too busy to answer in `timeout_s`.

        Only a refused connection or a non-200 /health counts as unhealthy: a server busy
        generating may answer slowly, and that says nothing against sending it work. (The
        poller treats silence after an unhealthy reading as still down: see `_poll`.)
        """
        timeout = timeout_s or max(5.0, 2 * self._settings.metrics_poll_s)
        try:
            health = await self._client.get("/health", timeout=timeout)
            if health.status_code != 200:
                return VllmSnapshot(time.monotonic(), False, error=f"/health answered HTTP {health.status_code}")
            metrics = await self._client.get("/metrics", timeout=timeout)
            metrics.raise_for_status()
            return parse_metrics(metrics.text, time.monotonic())
        except httpx.TimeoutException:
            return None
        except (httpx.HTTPError, ValueError) as exc:
            return VllmSnapshot(time.monotonic(), False, error=f"{type(exc).__name__}: {exc}")


def _raise_stream_error(chunk: Any) -> None:
    error = chunk.get("error") if isinstance(chunk.get("error"), dict) else None
    if error is None and chunk.get("object") == "error":
        error = chunk
    if error is not None:
        code = error.get("code")
        status = code if isinstance(code, int) else 500
        raise status_error("vllm", status, str(error.get("message", error)))


def _error_text(text: str) -> str:
    """vLLM error bodies: {"error": {"message": ...}}, {"message": ...} or {"detail": ...}."""
    try:
        data = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and "message" in inner:
            return str(inner["message"])
        for key in ("message", "detail"):
            if key in data:
                return str(data[key])
    return text
