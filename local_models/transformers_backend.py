"""In-process transformers backend on CPU: the embedded default.

Concurrent requests are micro-batched and decoded together step by step with a
KV cache, so each row can stream its own tokens, stop at its own length, use
its own temperature, and be cancelled (client gone, deadline passed) between
steps. Every generated token carries its log-probability and the top
alternatives; for label tasks the first step also reports each label's first
token, so the gateway can renormalise over the label set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.contracts import (
    BackendCall,
    Completion,
    Delta,
    LocalLoad,
    StreamEvent,
    TokenLogprob,
    Usage,
)
from gateway.errors import CapacityExceeded, DeadlineExceeded, InvalidArgument
from local_models.batcher import MicroBatcher

if TYPE_CHECKING:
    import torch

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


@dataclass(eq=False)
class _Job:
    """One request inside the batcher; events flow back to the event loop thread-safely."""

    call: BackendCall
    prompt_ids: list[int]
    label_ids: dict[str, int]  # token text -> id, reported at the first step
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[StreamEvent | BaseException] = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def emit(self, event: StreamEvent | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.events.put_nowait, event)

    def fail(self, error: BaseException) -> None:
        self.emit(error)


class TransformersBackend:
    """`LocalBackend` over a Hugging Face causal LM loaded in this process."""

    name = "transformers"

    def __init__(
        self,
        settings: TransformersSettings,
        *,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
    ) -> None:
        import torch  # noqa: PLC0415 - torch only when an in-process backend is configured
        from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

        torch.set_num_threads(settings.threads)
        self._torch = torch
        self._settings = settings
        self.model = settings.model_name
        started = time.perf_counter()
        self._tokenizer = AutoTokenizer.from_pretrained(settings.model_dir)
        self._model = AutoModelForCausalLM.from_pretrained(settings.model_dir, dtype=torch.float32)
        self._model.eval()
        self.context_length = int(self._model.config.max_position_embeddings)
        eos = self._model.generation_config.eos_token_id
        self._eos_ids = frozenset(eos if isinstance(eos, list) else [eos])
        self._pad_id = self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else min(self._eos_ids)
        self._in_flight = 0
        self._pieces: dict[int, str] = {}
        self._label_cache: dict[tuple[str, ...], dict[str, int]] = {}
        self._batcher: MicroBatcher[_Job] = MicroBatcher(
            self._run_batch,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_s,
            key=lambda job: job.call.adapter,
            on_batch=on_batch,
        )
        log.info(
            "loaded local model",
            extra={"model": self.model, "path": str(settings.model_dir), "seconds": round(time.perf_counter() - started, 2)},
        )

    # -- LocalBackend ---------------------------------------------------------------

    def load(self) -> LocalLoad:
        return LocalLoad(self._in_flight, self._settings.max_in_flight, self._batcher.estimated_wait_s())

    async def generate(self, call: BackendCall) -> Completion:
        async for event in self.stream(call):
            if isinstance(event, Completion):
                return event
        raise RuntimeError("the local stream ended without a completion")

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        if self._in_flight >= self._settings.max_in_flight:
            raise CapacityExceeded(f"local backend is at its in-flight limit ({self._settings.max_in_flight})")
        self._in_flight += 1
        job: _Job | None = None
        try:
            self._batcher.start()
            prompt_ids = await asyncio.to_thread(self._encode, call)
            job = _Job(call, prompt_ids, self._label_ids(call.labels), asyncio.get_running_loop())
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
            self._in_flight -= 1

    async def aclose(self) -> None:
        await self._batcher.aclose()

    # -- preparation (worker threads) -------------------------------------------------

    def _encode(self, call: BackendCall) -> list[int]:
        messages = [{"role": m.role.value, "content": m.content} for m in call.messages]
        ids: list[int] = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "input_ids"):
            ids = list(ids["input_ids"])
        if len(ids) + call.max_tokens > self.context_length:
            raise InvalidArgument(
                f"max_tokens: prompt ({len(ids)} tokens) + max_tokens ({call.max_tokens}) exceeds the model's "
                f"context of {self.context_length} tokens; shorten the messages or lower max_tokens"
            )
        return ids

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
        with torch.inference_mode():
            self._decode(jobs, torch)

    def _decode(self, jobs: list[_Job], torch: Any) -> None:  # noqa: C901 - one decode loop, kept in one place
        rows = len(jobs)
        width = max(len(job.prompt_ids) for job in jobs)
        input_ids = torch.full((rows, width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((rows, width), dtype=torch.long)
        for i, job in enumerate(jobs):
            n = len(job.prompt_ids)
            input_ids[i, width - n :] = torch.tensor(job.prompt_ids)
            mask[i, width - n :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        temperatures = torch.tensor([max(job.call.temperature, 0.0) for job in jobs])
        generated: list[list[int]] = [[] for _ in jobs]
        tokens: list[list[TokenLogprob]] = [[] for _ in jobs]
        texts = [""] * rows
        done = [False] * rows
        out = self._model(
            input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=True, logits_to_keep=1
        )
        step = 0
        while True:
            logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            chosen = self._choose(logprobs, temperatures, torch)
            k = self._settings.top_logprobs
            top_lp, top_ids = logprobs.topk(k, dim=-1) if k else (None, None)
            now = time.monotonic()
            for i, job in enumerate(jobs):
                if done[i]:
                    continue
                if job.cancelled:
                    done[i] = True
                    log.info("generation cancelled", extra={"request_id": job.call.request_id, "tokens": step})
                    job.fail(asyncio.CancelledError())
                    continue
                if job.call.deadline is not None and now > job.call.deadline:
                    done[i] = True
                    log.info("generation cancelled: deadline passed", extra={"request_id": job.call.request_id})
                    job.fail(DeadlineExceeded("the request's deadline passed during local generation"))
                    continue
                token_id = int(chosen[i])
                if token_id in self._eos_ids:
                    done[i] = True
                    job.emit(self._completion(job, texts[i], tokens[i], "stop"))
                    continue
                top: dict[str, float] = {}
                if top_ids is not None and top_lp is not None:
                    top = {self._piece(int(t)): float(v) for t, v in zip(top_ids[i], top_lp[i], strict=True)}
                if step == 0:
                    for piece, label_id in job.label_ids.items():
                        top[piece] = float(logprobs[i, label_id])
                generated[i].append(token_id)
                tokens[i].append(TokenLogprob(self._piece(token_id), float(logprobs[i, token_id]), top))
                text = self._tokenizer.decode(generated[i], skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(texts[i]):
                    job.emit(Delta(text[len(texts[i]) :]))
                    texts[i] = text
                if len(generated[i]) >= job.call.max_tokens:
                    done[i] = True
                    texts[i] = self._flush(job, generated[i], texts[i])
                    job.emit(self._completion(job, texts[i], tokens[i], "length"))
            if all(done):
                return
            step += 1
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.long)], dim=-1)
            positions = positions[:, -1:] + 1
            out = self._model(
                input_ids=chosen.unsqueeze(-1),
                attention_mask=mask,
                position_ids=positions,
                cache=out.cache,
                use_cache=True,
            )

    def _choose(self, logprobs: torch.Tensor, temperatures: torch.Tensor, torch: Any) -> torch.Tensor:
        greedy = logprobs.argmax(dim=-1)
        sampled_rows = temperatures > 0
        if not bool(sampled_rows.any()):
            return greedy
        scaled = logprobs / temperatures.clamp(min=1e-5).unsqueeze(-1)
        sampled = torch.multinomial(torch.softmax(scaled, dim=-1), 1).squeeze(-1)
        return torch.where(sampled_rows, sampled, greedy)

    def _flush(self, job: _Job, ids: list[int], shown: str) -> str:
        """Emit any text held back (an incomplete multi-byte character) before finishing."""
        text = self._tokenizer.decode(ids, skip_special_tokens=True)
        if len(text) > len(shown):
            job.emit(Delta(text[len(shown) :]))
        return text

    def _piece(self, token_id: int) -> str:
        piece = self._pieces.get(token_id)
        if piece is None:
            piece = self._pieces[token_id] = str(self._tokenizer.decode([token_id]))
        return piece

    def _completion(self, job: _Job, text: str, tokens: list[TokenLogprob], reason: str) -> Completion:
        return Completion(
            text=text,
            provider=self.name,
            model=job.call.adapter.name if job.call.adapter else self.model,
            usage=Usage(len(job.prompt_ids), len(tokens)),
            finish_reason=reason,
            tokens=tuple(tokens),
        )

