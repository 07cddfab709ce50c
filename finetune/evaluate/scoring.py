"""Batched label scoring with the gateway's own confidence scorer.

One forward pass per batch, output head at the last prompt position only. For each example
it builds the first generated token as the in-process backend reports it (the greedy token,
its log-probability, the top alternatives and every label surface form) and passes it to
gateway.core.confidence.score, so evaluation measures exactly what serving computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from finetune.examples import Example
from finetune.tokens import ChatEncoder, surface_label_ids
from finetune.train.forward import decoder_and_head, hidden_states, shared_prefix_length
from gateway.core.confidence import choose_label, label_probabilities, score
from gateway.core.contracts import TokenLogprob


@dataclass(frozen=True, eq=False)
class Scored:
    labels: tuple[str, ...]
    gold: npt.NDArray[np.int64]  # index of the true label
    pred: npt.NDArray[np.int64]  # index of the answered label; -1 when the answer is not a label
    tokens: tuple[TokenLogprob, ...]  # the first answer token as the backend reports it
    texts: tuple[str, ...]  # the answer text the scorer sees

    def __len__(self) -> int:
        return len(self.gold)

    @property
    def correct(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.pred == self.gold, dtype=np.bool_)

    def confidence(self, temperature: float = 1.0) -> npt.NDArray[np.float64]:
        """The gateway's confidence for each answer (0 when the answer is not a label)."""
        values = [
            score(t, (tok,), self.labels, temperature=temperature).confidence
            for t, tok in zip(self.texts, self.tokens, strict=True)
        ]
        return np.array([0.0 if v is None else v for v in values])

    def label_probs(self) -> npt.NDArray[np.float64]:
        """Label-set-renormalised probabilities (n, labels), temperature 1."""
        return np.array([[label_probabilities(tok, self.labels)[x] for x in self.labels] for tok in self.tokens])

    def subset(self, rows: Sequence[int]) -> Scored:
        """The same answers for `rows` only, in that order."""
        index = np.asarray(rows, dtype=np.int64)
        return Scored(
            self.labels,
            self.gold[index],
            self.pred[index],
            tuple(self.tokens[i] for i in rows),
            tuple(self.texts[i] for i in rows),
        )


def score_examples(
    model: Any,
    tokenizer: Any,
    encoder: ChatEncoder,
    examples: Sequence[Example],
    *,
    batch_size: int = 32,
    top_logprobs: int = 5,
    prefix_cache: bool = True,
) -> Scored:
    import torch

    labels = encoder.labels
    decoder, head = decoder_and_head(model)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    surface = surface_label_ids(tokenizer, labels)
    prompts = [encoder.prompt_ids(ex) for ex in examples]
    n = shared_prefix_length(prompts) if prefix_cache else 0
    prefix = prompts[0][:n] if prompts else []
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths batch together
    tokens: list[TokenLogprob | None] = [None] * len(prompts)
    pieces: dict[int, str] = {}

    def piece(token_id: int) -> str:
        if token_id not in pieces:
            pieces[token_id] = str(tokenizer.decode([token_id]))
        return pieces[token_id]

    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            rows = [prompts[i][n:] for i in chunk]
            hidden = hidden_states(decoder, prefix, rows, pad_id, device)
            last = torch.tensor([len(r) - 1 for r in rows], device=device)
            logprobs = torch.log_softmax(head(hidden[torch.arange(len(rows), device=device), last]).float(), dim=-1)
            top_lp, top_ids = logprobs.topk(top_logprobs, dim=-1)
            chosen = logprobs.argmax(dim=-1)
            for k, i in enumerate(chunk):
                top = {piece(int(t)): float(v) for t, v in zip(top_ids[k], top_lp[k], strict=True)}
                for text, token_id in surface.items():
                    top[text] = float(logprobs[k, token_id])
                token_id = int(chosen[k])
                tokens[i] = TokenLogprob(piece(token_id), float(logprobs[k, token_id]), top)
    first = [t for t in tokens if t is not None]
    texts = tuple(_answer_text(t.token, labels) for t in first)
    pred = [choose_label(text, labels) for text in texts]
    return Scored(
        labels,
        np.array([labels.index(ex.label) for ex in examples], dtype=np.int64),
        np.array([-1 if p is None else labels.index(p) for p in pred], dtype=np.int64),
        tuple(first),
        texts,
    )


def _answer_text(first_piece: str, labels: Sequence[str]) -> str:
    """The answer greedy decoding would give: a label whose first token this is (labels have
    distinct first tokens, and a trained adapter completes the label), else the piece itself."""
    stripped = first_piece.strip().lower()
    owners = [label for label in labels if stripped and label.lower().startswith(stripped)]
    return owners[0] if len(owners) == 1 else first_piece
