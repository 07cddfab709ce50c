"""In-process transformers backend on CPU: the embedded default.

Concurrent requests are micro-batched and decoded together step by step with a
KV cache, so each row can stream its own tokens, stop at its own length, use
its own temperature, and be cancelled (client gone, deadline passed) between
steps. Every generated token carries its log-probability and the top
alternatives; for label tasks the first step also reports each label's first
token, so the gateway can renormalise over the label set.

Greedy label tasks take a faster path (`label_fast_path`, on by default): their
batches share one prompt prefix, whose key/value cache is computed once per
adapter and reused (local_models.prefix_kv); the prefill may use more torch
threads than decoding; and the rest of the label is checked in one pass instead
of a decode loop (local_models.label_drafts). The answers are the ones the decode
loop gives, token for token, with log-probabilities equal to float rounding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core import stops
from gateway.core.contracts import (
    AdapterRef,
    BackendCall,
    Completion,
    Delta,
    LocalLoad,
    Message,
    Role,
    StreamEvent,
    TokenLogprob,
    Usage,
)
from gateway.core.errors import CapacityExceeded, DeadlineExceeded, InvalidArgument
from local_models.batcher import MicroBatcher
from local_models.label_drafts import Draft, greedy_steps, label_drafts
from local_models.pace import LabelSteps, Pace, estimate_load
from local_models.prefix_kv import PrefixKV
from local_models.prompt_prefix import Prefix, PromptPrefixes
from local_models.streams import completion_of

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TransformersSettings:
    model_dir: Path
    model_name: str
    threads: int = 1
    max_batch: int = 8
    max_wait_s: float = 0.005
    max_in_flight: int = 64
    top_logprobs: int = 5
    max_adapters: int = 8  # LoRA adapters kept loaded at once (least recently used go first)
    label_fast_path: bool = True  # greedy label tasks: reused prefix cache, one verification pass
    prefix_cache: int = 32  # prompt-prefix key/value caches kept for label tasks (least recently used go first)
    prefill_threads: int = 0  # torch threads for a label batch's prefill; 0 = `threads`
    quantize_int8: bool = False  # int8 linear layers (local_models.int8): faster, but changes answers


@dataclass(eq=False)
class _Job:
    """One request inside the batcher; events flow back to the event loop thread-safely."""

    call: BackendCall
    prompt_ids: list[int]
    label_ids: dict[str, int]  # token text -> id, reported at the first step
    loop: asyncio.AbstractEventLoop
    prefix: Prefix | None = None  # label fast path: the fixed prompt prefix, () when none; None = decode loop
    events: asyncio.Queue[StreamEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    accepted: float = 0.0  # time.monotonic() when the backend took the call (before tokenising)
    started: float = 0.0  # when its batch began on the model; 0 = not yet

    def emit(self, event: StreamEvent | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def fail(self, error: BaseException) -> None:
        self.emit(error)


@dataclass(eq=False)
class _Row:
    """Decoding state of one request inside a batch."""

    job: _Job
    ids: list[int] = field(default_factory=list)
    tokens: list[TokenLogprob] = field(default_factory=list)
    text: str = ""
    done: bool = False


class TransformersBackend:
    """`LocalBackend` over a Hugging Face causal LM loaded in this process."""

    name = "transformers"
    supports_tools = False  # tools and tool turns go to the remote tier (gateway/routing/policy.py)

    def __init__(
        self,
        settings: TransformersSettings,
        *,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(settings.threads)
        self._torch = torch
        self._settings = settings
        self.model = settings.model_name
        started = time.perf_counter()
        self._tokenizer: Any = AutoTokenizer.from_pretrained(settings.model_dir)
        model: Any = AutoModelForCausalLM.from_pretrained(settings.model_dir, dtype=torch.float32)
        self._model = model.eval()
        if settings.quantize_int8:
            from local_models.int8 import quantize_linear_layers

            quantize_linear_layers(self._model, torch)
        self.context_length = int(self._model.config.max_position_embeddings)
        eos = self._model.generation_config.eos_token_id
        self._eos_ids = frozenset(eos if isinstance(eos, list) else [eos])
        self._pad_id = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else min(self._eos_ids)
        self._in_flight = 0
        self._encoding: list[tuple[int, float | None]] = []  # (steps, deadline) of admitted requests being tokenised
        self._pace = Pace(settings.max_batch)  # prefill and step times by batch size, from every forward pass
        self._pace.attach(self._model)
        self._label_steps = LabelSteps()  # steps fast-path label batches ran after their prefill
        self._pieces: dict[int, str] = {}
        self._label_cache: dict[tuple[str, ...], dict[str, int]] = {}
        self._draft_cache: dict[tuple[str, ...], dict[int, Draft]] = {}
        self._prefixes = PromptPrefixes(self._tokenizer)
        self._prefix_kv = PrefixKV(self._model, torch, max_entries=settings.prefix_cache)
        self._adapters: OrderedDict[str, None] = OrderedDict()  # loaded "name@version", least recent first
        self._peft: Any = None  # a peft.PeftModel around self._model once the first adapter is loaded
        self._batcher: MicroBatcher[_Job] = MicroBatcher(
            self._run_batch,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_s,
            key=lambda job: (job.call.adapter, job.prefix),  # label fast-path batches share one prefix
            on_batch=on_batch,
            steps=lambda job: self._steps(job.call),
            deadline=lambda job: job.call.deadline,
            on_start=self._pace.batch_started,
        )
        self._warm_up()
        log.info(
            "loaded local model",
            extra={
                "model": self.model,
                "path": str(settings.model_dir),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )

    # -- LocalBackend ---------------------------------------------------------------

    def load(self) -> LocalLoad:
        """What a request arriving now meets: the batch running, the queue (and requests being tokenised)."""
        return estimate_load(
            self._pace,
            in_flight=self._in_flight,
            max_in_flight=self._settings.max_in_flight,
            running=self._batcher.running_batch,
            queued=self._batcher.waiting() + self._encoding,
            max_wait_s=self._settings.max_wait_s,
            label_steps=self._label_steps.most,
        )

    async def generate(self, call: BackendCall) -> Completion:
        return await completion_of(self.stream(call), self.name)

    async def stream(self, call: BackendCall) -> AsyncGenerator[StreamEvent, None]:
        if self._in_flight >= self._settings.max_in_flight:
            raise CapacityExceeded(f"local backend is at its in-flight limit ({self._settings.max_in_flight})")
        self._in_flight += 1
        job: _Job | None = None
        accepted = time.monotonic()
        shape = (self._steps(call), call.deadline)
        self._encoding.append(shape)  # counted by load() before this coroutine first yields
        try:
            self._batcher.start()
            try:
                prompt_ids, prefix = await asyncio.to_thread(self._encode, call)
            finally:
                self._encoding.remove(shape)
            job = _Job(
                call,
                prompt_ids,
                self._label_ids(call.labels),
                asyncio.get_running_loop(),
                prefix=prefix,
                accepted=accepted,
            )
            self._batcher.submit(job)
            while True:
                event = await job.events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Completion):
                    return
        finally:
            if job is not None:
                job.cancelled = True  # stops the row at the next step if the caller went away
                self._batcher.withdraw(job)  # and leaves the queue now if it was still waiting
            self._in_flight -= 1

    async def aclose(self) -> None:
        await self._batcher.aclose()

    def _warm_up(self) -> None:
        """A short batch of one, two and max_batch rows through the decode loop, so that the pace has
        figures for the first burst (provisional: real batches replace them)."""
        call = BackendCall("warm-up", (Message(Role.USER, "Say hello to the desk."),), max_tokens=4)
        loop = asyncio.new_event_loop()  # never run: the rows' events are dropped with it
        try:
            ids, _ = self._encode(call)
            with self._pace.warming():
                for size in dict.fromkeys((1, min(2, self._settings.max_batch), self._settings.max_batch)):
                    self._pace.batch_started()
                    self._run_batch([_Job(call, ids, {}, loop) for _ in range(size)])
        finally:
            loop.close()

    # -- preparation (worker threads) -------------------------------------------------

    def _steps(self, call: BackendCall) -> int:
        """Forward passes after the prefill that a call may take: for a fast-path label as many as recent label
        batches ran (max_tokens before any), else max_tokens."""
        if self._settings.label_fast_path and call.labels and call.temperature <= 0:
            return self._label_steps.steps(call.max_tokens)
        return max(call.max_tokens, 1)

    def _encode(self, call: BackendCall) -> tuple[list[int], Prefix | None]:
        """The prompt's token ids, and for the label fast path its fixed prefix (None: decode loop)."""
        messages = [{"role": m.role.value, "content": m.content} for m in call.messages]
        encoded: Any = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        ids: list[int] = list(encoded["input_ids"] if hasattr(encoded, "input_ids") else encoded)
        if len(ids) + call.max_tokens > self.context_length:
            raise InvalidArgument(
                f"max_tokens: prompt ({len(ids)} tokens) + max_tokens ({call.max_tokens}) exceeds the model's "
                f"context of {self.context_length} tokens; shorten the messages or lower max_tokens"
            )
        if not (self._settings.label_fast_path and call.labels and call.temperature <= 0):
            return ids, None
        return ids, self._prefixes.prefix_of(messages, ids)

    def _label_ids(self, labels: Sequence[str]) -> dict[str, int]:
        """Surface forms of each label ("up", " up", "Up") -> the id of their first token."""
        key = tuple(labels)
        if key not in self._label_cache:
            ids: dict[str, int] = {}
            for label in labels:
                for form in {label, label.lower(), label.capitalize(), " " + label, " " + label.lower()}:
                    encoded = self._tokenizer.encode(form, add_special_tokens=False)
                    if encoded:
                        ids[self._piece(encoded[0])] = encoded[0]
            self._label_cache[key] = ids
        return self._label_cache[key]

    # -- decoding (the batcher's worker thread) ---------------------------------------

    def _run_batch(self, jobs: list[_Job]) -> None:
        torch = self._torch
        started = time.monotonic()
        for job in jobs:
            job.started = started
        self._use_adapter(jobs[0].call.adapter)  # the batcher never mixes adapters in one batch
        with torch.inference_mode():
            if jobs[0].prefix is not None:  # the batcher never mixes prefixes either
                self._decode_labels(jobs, jobs[0].prefix, torch)
            else:
                self._decode(jobs, torch)

    def _use_adapter(self, ref: AdapterRef | None) -> None:
        """Activate a LoRA adapter, loading it from ref.path on first use; the bare base model for None.

        peft injects the LoRA layers into the model in place, so decoding keeps calling the same
        model object; `self._peft` only loads, selects, switches off and drops adapters.
        """
        if ref is None:
            if self._peft is not None:
                self._peft.base_model.disable_adapter_layers()
            return
        key = self._adapter_key(ref)
        if key not in self._adapters:
            from peft import PeftModel

            started = time.perf_counter()
            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self._model, ref.path, adapter_name=key)
            else:
                while len(self._adapters) >= max(1, self._settings.max_adapters):
                    evicted, _ = self._adapters.popitem(last=False)
                    self._peft.delete_adapter(evicted)
                self._peft.load_adapter(ref.path, adapter_name=key)
            self._model.eval()  # freshly added LoRA layers start in training mode (dropout on)
            self._adapters[key] = None
            log.info("loaded adapter %s from %s in %.2f s", key, ref.path, time.perf_counter() - started)
        self._adapters.move_to_end(key)
        self._peft.set_adapter(key)
        self._peft.base_model.enable_adapter_layers()

    def _decode(self, jobs: list[_Job], torch: Any) -> None:
        rows = [_Row(job) for job in jobs]
        input_ids, mask, positions = self._left_padded([job.prompt_ids for job in jobs], 0, torch)
        out = self._model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        self._generate(rows, out, mask, positions, torch)

    def _decode_labels(self, jobs: list[_Job], prefix: Prefix, torch: Any) -> None:
        """Greedy label answers: prefill after a cached prefix, then one pass over the guessed label.

        Rows whose answer the pass does not finish go on in the decode loop from the prefill.
        """
        rows = [_Row(job) for job in jobs]
        n = len(prefix)
        input_ids, mask, positions = self._left_padded([job.prompt_ids[n:] for job in jobs], n, torch)
        with self._threads(self._settings.prefill_threads or self._settings.threads):
            cache = (
                self._prefix_kv.cache_for((self._adapter_key(jobs[0].call.adapter), prefix), len(jobs)) if n else None
            )
            out = self._model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions[:, n:],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
        first = logprobs.argmax(dim=-1)
        self._step(rows, first.tolist(), logprobs, torch)
        live = [i for i, row in enumerate(rows) if not row.done]
        if not live:
            self._label_steps.observe(1)
            return
        drafts = self._draft_cache.get(jobs[0].call.labels)
        if drafts is None:
            drafts = self._draft_cache[jobs[0].call.labels] = label_drafts(self._tokenizer, jobs[0].call.labels)
        fed = [drafts.get(int(first[i]), (int(first[i]),)) for i in range(len(rows))]
        width = max(len(fed[i]) for i in live)
        draft_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        draft_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i in live:
            draft_ids[i, : len(fed[i])] = torch.tensor(fed[i])
            draft_mask[i, : len(fed[i])] = 1
        checked = self._model(
            input_ids=draft_ids,
            attention_mask=torch.cat([mask, draft_mask], dim=-1),
            position_ids=positions[:, -1:] + 1 + torch.arange(width),
            cache=out.cache,
            use_cache=True,
        )
        passed = torch.log_softmax(checked.logits.float(), dim=-1)
        greedy = passed.argmax(dim=-1).tolist()
        for i in live:
            steps = greedy_steps(fed[i], greedy[i], self._eos_ids, rows[i].job.call.max_tokens)
            for j in range(steps or 0):
                self._step([rows[i]], [greedy[i][j]], passed[i : i + 1, j], torch)
        if all(row.done for row in rows):
            self._label_steps.observe(1)
            return
        out.cache.crop(-width)  # back to the prefill: the rest decode step by step from the first token
        out, mask, positions = self._next(out, first, mask, positions, torch)
        self._generate(rows, out, mask, positions, torch)
        self._label_steps.observe(
            max(len(row.ids) for row in rows)
        )  # the check pass, then one per token after the first

    def _left_padded(self, prompts: Sequence[Sequence[int]], prefix: int, torch: Any) -> tuple[Any, Any, Any]:
        """Prompts left-padded to one width (every row's last token at the end), after `prefix` cached tokens.

        Returns the input ids, the attention mask over prefix + prompts, and the positions of both.
        """
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), prefix + width), dtype=torch.long)
        mask[:, :prefix] = 1
        for i, ids in enumerate(prompts):
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, prefix + width - len(ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return input_ids, mask, positions

    def _generate(self, rows: list[_Row], out: Any, mask: Any, positions: Any, torch: Any) -> None:
        """The decode loop: one token per unfinished row per step, until every row is done."""
        temperatures = torch.tensor([max(row.job.call.temperature, 0.0) for row in rows])
        while True:
            logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            chosen = self._choose(logprobs, temperatures, torch)
            self._step(rows, chosen.tolist(), logprobs, torch)
            if all(row.done for row in rows):
                return
            out, mask, positions = self._next(out, chosen, mask, positions, torch)

    def _next(self, out: Any, chosen: Any, mask: Any, positions: Any, torch: Any) -> tuple[Any, Any, Any]:
        """One decode step: feed each row's chosen token."""
        mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=torch.long)], dim=-1)
        positions = positions[:, -1:] + 1
        out = self._model(
            input_ids=chosen.unsqueeze(-1), attention_mask=mask, position_ids=positions, cache=out.cache, use_cache=True
        )
        return out, mask, positions

    def _step(self, rows: Sequence[_Row], chosen: Sequence[int], logprobs: Any, torch: Any) -> None:
        """Advance each unfinished row by its chosen token, with the top alternatives from `logprobs`."""
        k = self._settings.top_logprobs
        top_lp, top_ids = logprobs.topk(max(k, 1), dim=-1)
        now = time.monotonic()
        for i, row in enumerate(rows):
            if not row.done:
                top = dict(zip(top_ids[i].tolist()[:k], top_lp[i].tolist()[:k], strict=True))
                self._advance(row, int(chosen[i]), logprobs[i], top, now)

    @contextlib.contextmanager
    def _threads(self, count: int) -> Iterator[None]:
        """torch's intra-op threads set to `count` for the block (only the batch worker runs the model)."""
        before = self._torch.get_num_threads()
        if count != before:
            self._torch.set_num_threads(count)
        try:
            yield
        finally:
            if count != before:
                self._torch.set_num_threads(before)

    @staticmethod
    def _adapter_key(ref: AdapterRef | None) -> str:
        return f"{ref.name}@{ref.version}" if ref is not None else ""

    def _advance(self, row: _Row, token_id: int, logprobs: Any, top_ids: dict[int, float], now: float) -> None:
        """One decoding step for one request: stop it, or record its token and stream new text."""
        job = row.job
        if job.cancelled:
            row.done = True
            log.info("generation cancelled", extra={"request_id": job.call.request_id, "tokens": len(row.ids)})
            job.fail(asyncio.CancelledError())
            return
        if job.call.deadline is not None and now > job.call.deadline:
            row.done = True
            log.info("generation cancelled: deadline passed", extra={"request_id": job.call.request_id})
            job.fail(DeadlineExceeded("the request's deadline passed during local generation"))
            return
        if token_id in self._eos_ids:
            text = str(self._tokenizer.decode(row.ids, skip_special_tokens=True))
            self._send(row, text.rstrip("\ufffd"), final=True)  # the tail held back for the stop sequences
            row.done = True
            job.emit(self._completion(job, row, "stop"))
            return
        top = {self._piece(t): lp for t, lp in top_ids.items()}
        if not row.ids:  # the answer's first position: report every label's first token too
            top.update({piece: float(logprobs[label_id]) for piece, label_id in job.label_ids.items()})
        row.ids.append(token_id)
        row.tokens.append(TokenLogprob(self._piece(token_id), float(logprobs[token_id]), top))
        text, stopped = stops.cut(str(self._tokenizer.decode(row.ids, skip_special_tokens=True)), job.call.stop)
        finished = stopped or len(row.ids) >= job.call.max_tokens
        self._send(row, text, final=finished)
        if finished:
            row.done = True
            job.emit(self._completion(job, row, "stop" if stopped else "length"))

    @staticmethod
    def _send(row: _Row, text: str, *, final: bool) -> None:
        """Stream what `text` adds to what was sent, holding back half characters and, until the answer
        ends, a tail that could still become a stop sequence."""
        if not final:
            if text.endswith("\ufffd"):
                return
            text = text[: stops.safe_length(text, row.job.call.stop)]
        if len(text) > len(row.text):
            row.job.emit(Delta(text[len(row.text) :]))
            row.text = text

    def _choose(self, logprobs: Any, temperatures: Any, torch: Any) -> Any:
        greedy = logprobs.argmax(dim=-1)
        sampled_rows = temperatures > 0
        if not bool(sampled_rows.any()):
            return greedy
        scaled = logprobs / temperatures.clamp(min=1e-5).unsqueeze(-1)
        sampled = torch.multinomial(torch.softmax(scaled, dim=-1), 1).squeeze(-1)
        return torch.where(sampled_rows, sampled, greedy)

    def _piece(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = str(self._tokenizer.decode([token_id]))
        return piece

    def _completion(self, job: _Job, row: _Row, reason: str) -> Completion:
        return Completion(
            text=row.text,
            provider=self.name,
            model=job.call.adapter.name if job.call.adapter else self.model,
            usage=Usage(len(job.prompt_ids), len(row.tokens)),
            finish_reason=reason,
            tokens=tuple(row.tokens),
            queued_s=job.started - job.accepted if job.started and job.accepted else None,
        )
