"""Label scoring on the llama.cpp path: every example asked of the llama.cpp backend as the gateway asks it.

The same `Scored` as finetune.evaluate.scoring builds on the transformers path, so the same
evaluation, calibration and threshold code reads it. Each example is one greedy call with the
task's prompt, labels and adapter; the backend decodes them together over its slots. The answer's
text chooses the label and its first token carries the label probabilities, which is what
gateway.core.confidence.score reads when the gateway serves the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from finetune.evaluate.scoring import Scored
from finetune.examples import Example, PromptTemplate
from gateway.core.confidence import choose_label
from gateway.core.contracts import AdapterRef, BackendCall, Completion, LocalBackend, Message, Role, TokenLogprob

LABEL_MAX_TOKENS = 8  # enough for a label and its end; a trained adapter stops after the label


async def score_on_backend(
    backend: LocalBackend,
    adapter: AdapterRef | None,
    template: PromptTemplate,
    labels: Sequence[str],
    examples: Sequence[Example],
    *,
    concurrency: int = 32,
    max_tokens: int = LABEL_MAX_TOKENS,
) -> Scored:
    """Every example answered by `backend` (at most `concurrency` at once, below its in-flight limit)."""
    labels = tuple(labels)
    gate = asyncio.Semaphore(concurrency)

    async def ask(i: int, example: Example) -> Completion:
        call = BackendCall(f"measure-{i}", _messages(template, example), max_tokens, adapter=adapter, labels=labels)
        async with gate:
            return await backend.generate(call)

    completions = await asyncio.gather(*(ask(i, ex) for i, ex in enumerate(examples)))
    pred = [choose_label(c.text, labels) for c in completions]
    return Scored(
        labels,
        np.array([labels.index(ex.label) for ex in examples], dtype=np.int64),
        np.array([-1 if p is None else labels.index(p) for p in pred], dtype=np.int64),
        tuple(c.tokens[0] if c.tokens else TokenLogprob(c.text, 0.0) for c in completions),
        tuple(c.text for c in completions),
    )


def _messages(template: PromptTemplate, example: Example) -> tuple[Message, ...]:
    """The prompt training used (finetune.tokens.ChatEncoder): the example's own system prompt, else the task's."""
    own = PromptTemplate(example.system, template.user) if example.system is not None else template
    return tuple(Message(Role(m["role"]), m["content"]) for m in own.messages(example.input))
