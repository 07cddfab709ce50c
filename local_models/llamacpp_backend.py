"""llama.cpp as the local tier, in this process: `[local] backend = "llamacpp"`.

The engine (local_models/llamacpp_engine.py) is llama.cpp's own server, embedded through the
prebuilt xllamacpp wheel. It decodes up to `slots` requests together (continuous batching: a
request starts as soon as a slot is free, not when a batch forms) and reports each token's
log-probability and alternatives, computed by llama.cpp over the whole vocabulary.

- **A request** runs on a thread of this backend's pool while llama.cpp generates; each
  streamed chunk comes back to the event loop as a Delta, then one Completion. Between two
  tokens the engine asks whether to go on: a caller that went away or a deadline that passed
  stops the request there and frees its slot. A request still waiting for a slot when its
  deadline passes is answered DEADLINE_EXCEEDED at once; the engine drops it at its first token.
- **Adapters:** each task's LoRA is a GGUF file (`adapter_model.gguf`, written by finetune's
  export beside the PEFT files; converted into `adapter_cache` for adapters published before).
  The engine loads every adapter in use at scale 0, and each request names its own adapter
  at scale 1 (llama.cpp's per-request `lora` scales), so one engine serves every task; requests
  with different adapters run in separate decode batches. A version the engine has not loaded
  (a new card) starts a new engine with it beside the others (about a second); requests
  already running finish on the old engine, which is closed after them. No restart.
- **Load:** `load()` estimates from the requests admitted now and the prefill and step times
  llama.cpp reported for recent answers (local_models/llamacpp_pace.py).
- **Confidence** reads the same figures as on the transformers path: token log-probabilities
  over the full vocabulary, and at a label call's first position each label's first token
  (see local_models/llamacpp_chunks.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.contracts import AdapterRef, BackendCall, Completion, LocalLoad, StreamEvent
from gateway.core.errors import BackendError, CapacityExceeded, DeadlineExceeded, GatewayError, InvalidArgument
from gateway.core.structured import schema_of
from local_models.gguf_lora import GGUF_ADAPTER_FILE, BaseShape, GgufLoraError, base_shape_from_gguf, write_gguf_lora
from local_models.llamacpp_chunks import ChunkReader
from local_models.llamacpp_engine import Engine, EngineError, EngineRequests, EngineSettings
from local_models.llamacpp_pace import Admitted, SlotPace, estimate_load
from local_models.pace import LabelSteps
from local_models.streams import completion_of

log = logging.getLogger(__name__)

EngineFactory = Callable[[EngineSettings, Sequence[Path]], Engine]
_T = TypeVar("_T")
WARM_UP_PROMPTS = ("Say hello to the desk.", "Name one colour.")


@dataclass(frozen=True, slots=True)
class LlamaCppSettings:
    model_path: Path  # a GGUF model file
    model_name: str  # the name answers report
    adapter_cache: Path  # GGUF copies of adapters published with PEFT files only
    slots: int = 8
    context_length: int = 2048  # per slot: prompt + answer
    threads: int = 1
    batch_threads: int = 1
    max_in_flight: int = 64
    top_logprobs: int = 5
    label_top_logprobs: int = 40  # alternatives asked for on label calls, so the labels' first tokens are among them
    max_adapters: int = 8  # adapters loaded in one engine (least recently used dropped on the next reload)
    adapters: tuple[AdapterRef, ...] = ()  # loaded at start (the newest card of each task)
    warm_up: bool = True  # time a request of one and of two at start, so the first burst has figures


@dataclass(eq=False)
class _Loaded:
    """An engine, the adapters it holds (key -> GGUF file, in llama.cpp's id order) and the threads inside it."""

    engine: Engine
    files: Mapping[str, Path]
    users: int = 0
    retired: bool = False


@dataclass(eq=False)
class _Job:
    call: BackendCall
    reader: ChunkReader
    loop: asyncio.AbstractEventLoop
    admitted: Admitted
    events: asyncio.Queue[StreamEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    sequences: float = 0.0  # sum, over its tokens, of the sequences decoding when each arrived

    def emit(self, event: StreamEvent | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)


class LlamaCppBackend:
    """`LocalBackend` over llama.cpp in this process (construction loads the model: call it in a thread)."""

    name = "llamacpp"
    supports_tools = False  # tools and tool turns go to the remote tier (gateway/routing/policy.py)
    constrains_json = True  # response_format: llama.cpp decodes under the schema (llguidance; core/structured.py)

    def __init__(self, settings: LlamaCppSettings, *, engine_factory: EngineFactory = Engine) -> None:
        self._settings = settings
        self.model = settings.model_name
        self.context_length = settings.context_length
        self._engine_settings = EngineSettings(
            model_path=settings.model_path,
            slots=settings.slots,
            context_length=settings.context_length,
            threads=settings.threads,
            batch_threads=settings.batch_threads,
        )
        self._factory = engine_factory
        self._pool = ThreadPoolExecutor(max_workers=settings.max_in_flight + 2, thread_name_prefix="llamacpp")
        self._guard = threading.Lock()  # engine users, across the pool's threads
        self._recent: OrderedDict[str, AdapterRef] = OrderedDict()  # adapters in use, least recent first
        self._reload = asyncio.Lock()
        self._admitted: dict[int, Admitted] = {}  # requests taken and not finished, in arrival order
        self._jobs: set[_Job] = set()  # requests on the engine (stopped at their next token by aclose)
        self._pace = SlotPace(settings.slots)
        self._label_steps = LabelSteps()
        self._label_ids: dict[tuple[str, ...], asyncio.Future[frozenset[int]]] = {}  # one tokenization per label set
        self._base_shape: BaseShape | None = None  # read from the model file when an adapter needs converting
        self._loaded = self._first_engine(settings.adapters[-settings.max_adapters :])
        if settings.warm_up:
            self._warm_up()

    # -- LocalBackend ---------------------------------------------------------------------

    def load(self) -> LocalLoad:
        return estimate_load(
            self._pace,
            list(self._admitted.values()),
            max_in_flight=self._settings.max_in_flight,
            label_steps=self._label_steps.most,
        )

    async def generate(self, call: BackendCall) -> Completion:
        return await completion_of(self.stream(call), self.name)

    async def stream(self, call: BackendCall) -> AsyncGenerator[StreamEvent, None]:
        if len(self._admitted) >= self._settings.max_in_flight:
            raise CapacityExceeded(f"llamacpp backend is at its in-flight limit ({self._settings.max_in_flight})")
        if call.deadline is not None and time.monotonic() >= call.deadline:
            raise DeadlineExceeded("the request's deadline passed before llamacpp could start it")
        if call.max_tokens >= self.context_length:
            raise InvalidArgument(
                f"max_tokens: {call.max_tokens} leaves no room for the prompt in the model's context of "
                f"{self.context_length} tokens; lower max_tokens"
            )
        label = bool(call.labels)
        steps = self._label_steps.steps(call.max_tokens) if label else max(call.max_tokens, 1)
        admitted = Admitted(steps, call.deadline)
        self._admitted[id(admitted)] = admitted
        job: _Job | None = None
        try:
            label_ids = await self._labels(call.labels) if label else frozenset()
            loaded, adapter_file = await self._engine_for(call.adapter)
            s = self._settings  # structured calls keep wide alternatives: their enum values' first tokens
            reader = ChunkReader(
                provider=self.name,
                model=call.adapter.name if call.adapter is not None else self.model,
                max_tokens=call.max_tokens,
                context_length=self.context_length,
                top_k=s.top_logprobs if call.response_format is None else s.label_top_logprobs,
                label_ids=label_ids,
                accepted=time.monotonic(),
            )
            job = _Job(call, reader, asyncio.get_running_loop(), admitted)
            try:
                body = self._body(call, loaded.engine.lora_scales(adapter_file), label)
                self._pool.submit(self._run, loaded, body, job)
            except BaseException:
                self._release(loaded)
                raise
            self._jobs.add(job)
            async for event in self._events(job):
                yield event
        finally:
            if job is not None:
                job.cancelled = True  # the engine stops it at its next token if it is still going
                self._jobs.discard(job)
            self._admitted.pop(id(admitted), None)

    async def engine_requests(self) -> EngineRequests:
        """llama.cpp's own count of requests generating and waiting (read off the event loop)."""
        return await asyncio.to_thread(self._using, lambda engine: engine.requests())

    async def aclose(self) -> None:
        for job in list(self._jobs):
            job.cancelled = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        with self._guard:
            loaded, self._loaded.retired = self._loaded, True
        if loaded.users == 0:
            await asyncio.to_thread(loaded.engine.close)

    # -- the request path -------------------------------------------------------------------

    def _body(self, call: BackendCall, lora: list[dict[str, float]], label: bool) -> dict[str, Any]:
        # label and structured calls: wide alternatives, so the labels' (enum values') first tokens are among them
        wide = label or call.response_format is not None
        top = self._settings.label_top_logprobs if wide else self._settings.top_logprobs
        return {
            "messages": [{"role": m.role.value, "content": m.content} for m in call.messages],
            "max_tokens": call.max_tokens,
            "temperature": max(call.temperature, 0.0),
            "top_k": 0,  # sample from the whole distribution, as the transformers path does
            "top_p": 1.0,
            "min_p": 0.0,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": True,
            "top_logprobs": max(top, 1),  # 0 would switch llama.cpp's probabilities off altogether
            "timings_per_token": True,  # the first token's chunk says how long the prompt was
            "cache_prompt": True,
            "lora": lora,
            "stop": list(call.stop),  # llama.cpp ends the answer before the first and leaves it out
            **_constrained(call),
        }

    async def _events(self, job: _Job) -> AsyncGenerator[StreamEvent, None]:
        """The job's events as they come; DEADLINE_EXCEEDED when its deadline passes first."""
        deadline = job.call.deadline
        at = None if deadline is None else job.loop.time() + (deadline - time.monotonic())
        while True:
            try:
                async with asyncio.timeout_at(at):  # never spans a yield
                    event = await job.events.get()
            except TimeoutError:
                job.cancelled = True
                raise DeadlineExceeded("the request's deadline passed during local generation") from None
            if isinstance(event, BaseException):
                raise event
            self._progress(job)
            yield event
            if isinstance(event, Completion):
                self._learn(job, event)
                return

    def _progress(self, job: _Job) -> None:
        admitted = job.admitted
        done = len(job.reader.tokens)
        if done > admitted.done_steps:
            admitted.decoding = True
            job.sequences += (done - admitted.done_steps) * sum(1 for a in self._admitted.values() if a.decoding)
            admitted.done_steps = done

    def _learn(self, job: _Job, completion: Completion) -> None:
        """llama.cpp's own timings of this answer feed the load estimate."""
        timings = job.reader.timings
        prompt_ms = float(timings.get("prompt_ms", 0.0))
        if prompt_ms > 0:
            self._pace.observe_prefill(prompt_ms / 1000)
        predicted = int(timings.get("predicted_n", 0))
        tokens = len(completion.tokens)
        if predicted > 1 and tokens:
            self._pace.observe_step(job.sequences / tokens, float(timings["predicted_ms"]) / 1000 / predicted)
        if job.call.labels:
            self._label_steps.observe(tokens)

    def _run(self, loaded: _Loaded, body: Mapping[str, Any], job: _Job) -> None:
        """On a pool thread: the engine streams the answer into the job until it ends or the job stops it."""
        reader = job.reader

        def on_chunk(chunk: Mapping[str, Any]) -> bool:
            if job.cancelled:
                return True
            if job.call.deadline is not None and time.monotonic() > job.call.deadline:
                job.cancelled = True
                job.emit(DeadlineExceeded("the request's deadline passed during local generation"))
                return True
            try:
                events = reader.add(chunk)
            except GatewayError as exc:
                job.cancelled = True
                job.emit(exc)
                return True
            for event in events:
                job.emit(event)
            return reader.done

        try:
            loaded.engine.chat(body, on_chunk)
            if not job.cancelled and not reader.done:
                if reader.finish_reason:  # no usage chunk came: the answer is whole all the same
                    reader.done = True
                    job.emit(reader.completion())
                else:
                    job.emit(BackendError("llamacpp: the answer ended before it finished", retryable=True))
        except Exception as exc:  # noqa: BLE001 - whatever the engine raised reaches the caller as a backend error
            job.emit(BackendError(f"llamacpp failed: {type(exc).__name__}: {exc}", retryable=True))
        finally:
            self._release(loaded)

    # -- engines and adapters ---------------------------------------------------------------------

    async def _engine_for(self, ref: AdapterRef | None) -> tuple[_Loaded, Path | None]:
        """The engine to run on (counted as in use until the pool thread lets go) and the adapter's file there."""
        if ref is not None:
            key = _key(ref)
            self._recent[key] = ref
            self._recent.move_to_end(key)
            while len(self._recent) > 4 * self._settings.max_adapters:  # forget long-unused versions
                self._recent.popitem(last=False)
            if key not in self._loaded.files:
                async with self._reload:
                    if key not in self._loaded.files:
                        await self._swap(key)
        with self._guard:
            loaded = self._loaded
            loaded.users += 1
        return loaded, (loaded.files[_key(ref)] if ref is not None else None)

    async def _swap(self, wanted: str) -> None:
        """Start an engine with `wanted` and the most recently used adapters, then retire the current one."""
        others = [k for k in self._recent if k != wanted][len(self._recent) - self._settings.max_adapters :]
        refs = [self._recent[k] for k in (*others, wanted)]
        try:
            files = {_key(ref): await asyncio.to_thread(self._gguf_file, ref) for ref in refs}
            engine = await asyncio.to_thread(self._factory, self._engine_settings, tuple(files.values()))
        except (GgufLoraError, OSError, RuntimeError) as exc:
            self._recent.pop(wanted, None)
            raise BackendError(f"llamacpp could not load adapter {wanted}: {exc}") from exc
        with self._guard:
            old, self._loaded = self._loaded, _Loaded(engine, files)
            old.retired = True
            idle = old.users == 0
        log.info("llamacpp engine reloaded with adapter %s", wanted, extra={"adapters": list(files)})
        if idle:
            await asyncio.to_thread(old.engine.close)

    def _first_engine(self, refs: Sequence[AdapterRef]) -> _Loaded:
        """The engine at start, with the adapters that convert and load; one that does not is left to its first
        request (which then fails alone, with the reason), so a bad card never keeps the gateway from starting."""
        files: dict[str, Path] = {}
        for ref in refs:
            try:
                files[_key(ref)] = self._gguf_file(ref)
            except (GgufLoraError, OSError, ValueError) as exc:
                log.warning("adapter %s not loaded at start: %s", _key(ref), exc)
                continue
            self._recent[_key(ref)] = ref
        if files:
            try:
                return _Loaded(self._factory(self._engine_settings, tuple(files.values())), files)
            except EngineError as exc:
                log.warning("llama.cpp could not load the adapters at start, serving without them: %s", exc)
                self._recent.clear()
        return _Loaded(self._factory(self._engine_settings, ()), {})

    def _release(self, loaded: _Loaded) -> None:
        with self._guard:
            loaded.users -= 1
            close = loaded.retired and loaded.users == 0
        if close:
            loaded.engine.close()

    def _gguf_file(self, ref: AdapterRef) -> Path:
        """The adapter's GGUF LoRA: the one published beside it, else a converted copy in the cache."""
        published = Path(ref.path) / GGUF_ADAPTER_FILE
        if published.is_file():
            return published
        cached = self._settings.adapter_cache / ref.name / f"{ref.version}.gguf"
        if not cached.is_file():
            if self._base_shape is None:
                self._base_shape = base_shape_from_gguf(self._settings.model_path)
            write_gguf_lora(Path(ref.path), cached, self._base_shape)
            log.info("converted adapter %s to GGUF at %s", _key(ref), cached)
        return cached

    async def _labels(self, labels: Sequence[str]) -> frozenset[int]:
        """The ids of each label's first token, in the forms an answer may start with ("Up", " up" ...).

        Tokenized once per label set: callers that come while it runs wait for the same answer.
        """
        key = tuple(labels)
        pending = self._label_ids.get(key)
        if pending is None:
            pending = self._label_ids[key] = asyncio.ensure_future(asyncio.to_thread(self._using, _label_ids, key))
        try:
            return await asyncio.shield(pending)
        except Exception:
            if self._label_ids.get(key) is pending:
                del self._label_ids[key]  # asked again on the next call
            raise

    def _using(self, work: Callable[..., _T], *args: Any) -> _T:
        """Run `work(engine, *args)` on the current engine, counted as a user so it is not closed underneath.

        Closing an engine joins llama.cpp's threads while holding the GIL: anything of ours still talking
        to it from Python then could never finish, so an engine is closed only once nothing uses it.
        """
        with self._guard:
            loaded = self._loaded
            loaded.users += 1
        try:
            return work(loaded.engine, *args)
        finally:
            self._release(loaded)

    def _warm_up(self) -> None:
        """A request alone, then two together, so the load estimate has figures before the first burst."""
        from gateway.core.contracts import Message, Role

        self._pace.warming(True)
        try:
            for size in (1, 2):
                loop = asyncio.new_event_loop()  # never run: the events are read from the readers
                try:
                    jobs = []
                    for i in range(size):
                        call = BackendCall("warm-up", (Message(Role.USER, WARM_UP_PROMPTS[i % 2]),), max_tokens=4)
                        reader = ChunkReader(self.name, self.model, 4, self.context_length, 1)
                        jobs.append(_Job(call, reader, loop, Admitted(4, None)))
                    with self._guard:
                        self._loaded.users += size
                    body = [self._body(job.call, self._loaded.engine.lora_scales(None), False) for job in jobs]
                    futures = [
                        self._pool.submit(self._run, self._loaded, b, j) for b, j in zip(body, jobs, strict=True)
                    ]
                    for future in futures:
                        future.result()
                    for job in jobs:
                        job.sequences = size * len(job.reader.tokens)
                        if job.reader.done:
                            self._learn(job, job.reader.completion())
                finally:
                    loop.close()
        finally:
            self._pace.warming(False)


def _label_ids(engine: Engine, labels: Sequence[str]) -> frozenset[int]:
    forms = sorted({form for label in labels for form in _surface_forms(label)})
    return frozenset(tokens[0][0] for tokens in map(engine.tokenize, forms) if tokens)


def _surface_forms(label: str) -> tuple[str, ...]:
    """How an answer may start with `label`: the forms the transformers path reports at the first position too."""
    return (label, label.lower(), label.capitalize(), " " + label, " " + label.lower())


# One space after ':' and ',', no other whitespace: the model is never made to emit layout it did not want,
# whose low probabilities would sink the answer's token quantile.
COMPACT_JSON = {"whitespace_flexible": False, "key_separator": ": ", "item_separator": ", "}


def _constrained(call: BackendCall) -> dict[str, Any]:
    """The schema as an llguidance grammar (llama.cpp's `grammar` with the %llguidance header, built into
    xllamacpp): unlike the GBNF its `response_format` turns a schema into, it also holds numbers to their
    `minimum`/`maximum` (a trading `size` of 0 to 1) and strings to `maxLength`."""
    if call.response_format is None:
        return {}
    schema = {**schema_of(call.response_format), "x-guidance": COMPACT_JSON}
    return {"grammar": "%llguidance {}\nstart: %json " + json.dumps(schema)}


def _key(ref: AdapterRef) -> str:
    return f"{ref.name}@{ref.version}"
