"""Token ids exactly as serving sees them: the tokenizer's chat template with the generation
prompt, then (for training) the answer as the template itself would write it.

The gateway scores a label task from the first generated token, so each label's first token
must be its own: `ChatEncoder` refuses label sets where two labels start with the same token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetune.examples import Example, PromptTemplate


class LabelTokenError(ValueError):
    """Two labels start with the same token, so the first answer token cannot tell them apart."""


@dataclass(frozen=True, slots=True)
class Encoded:
    prompt: tuple[int, ...]  # chat-templated messages + the assistant generation prompt
    answer: tuple[int, ...]  # the label's tokens + the end-of-turn token
    label: int  # index into the label set


def _ids(value: Any) -> list[int]:
    if hasattr(value, "keys") and "input_ids" in value:
        value = value["input_ids"]
    return [int(x) for x in value]


class ChatEncoder:
    def __init__(self, tokenizer: Any, template: PromptTemplate, labels: Sequence[str]) -> None:
        self._tokenizer = tokenizer
        self._template = template
        self.labels = tuple(labels)
        self._answers = {label: self._answer_ids(label) for label in self.labels}
        for label, ids in self._answers.items():
            piece = str(tokenizer.decode([ids[0]])).strip().lower()
            others = [x for x in self.labels if x != label and x.lower().startswith(piece)]
            if others or not piece:
                raise LabelTokenError(
                    f"label '{label}' starts with the token {piece!r}, which also begins {others or 'nothing'}: "
                    "the gateway scores a label by its first token, so rename labels until each one's first "
                    "token begins no other label"
                )

    def prompt_ids(self, example: Example) -> list[int]:
        template = PromptTemplate(example.system, self._template.user) if example.system is not None else self._template
        messages = list(template.messages(example.input))
        return _ids(self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def encode(self, example: Example) -> Encoded:
        return Encoded(tuple(self.prompt_ids(example)), self._answers[example.label], self.labels.index(example.label))

    def _answer_ids(self, label: str) -> tuple[int, ...]:
        """The label's tokens and the end-of-turn token, as the chat template writes an assistant reply."""
        messages = [{"role": "user", "content": "x"}]
        prompt = _ids(self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
        full = _ids(
            self._tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": label}], add_generation_prompt=False, tokenize=True
            )
        )
        label_ids = _ids(self._tokenizer.encode(label, add_special_tokens=False))
        if full[: len(prompt)] == prompt and full[len(prompt) : len(prompt) + len(label_ids)] == label_ids:
            rest = full[len(prompt) + len(label_ids) :]
            if rest:
                return (*label_ids, rest[0])
        eos = self._tokenizer.eos_token_id
        return (*label_ids, *([int(eos)] if eos is not None else []))


def surface_label_ids(tokenizer: Any, labels: Sequence[str]) -> dict[str, int]:
    """First-token ids of each label's surface forms ("up", " up", "Up"): the ids the in-process
    backend reports at the first answer position (local_models.transformers_backend._label_ids)."""
    ids: dict[str, int] = {}
    for label in labels:
        for form in {label, label.lower(), label.capitalize(), " " + label, " " + label.lower()}:
            encoded = tokenizer.encode(form, add_special_tokens=False)
            if encoded:
                ids[str(tokenizer.decode([encoded[0]]))] = int(encoded[0])
    return ids
