"""The fixed start of a chat prompt: everything before the last message's text.

For a task that is its system prompt and the chat template's markup up to the
user's text, the same for every request of the task, so the model's key/value
cache for it can be computed once and reused (local_models.prefix_kv). A prefix
is only used when the whole prompt tokenises to the prefix's own tokens followed
by the rest, so the model sees exactly the token ids it would see without it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

_SENTINEL = "PREFIXEND0b1c2d"  # stands for the last message's text while the template is rendered

Prefix = tuple[int, ...]


class PromptPrefixes:
    """Fixed prefixes by message layout; safe to call from several preparation threads at once."""

    def __init__(self, tokenizer: Any, *, max_entries: int = 256) -> None:
        self._tokenizer = tokenizer
        self._max_entries = max_entries
        self._known: dict[tuple[object, ...], Prefix] = {}
        self._lock = threading.Lock()

    def prefix_of(self, messages: Sequence[Mapping[str, str]], prompt_ids: Sequence[int]) -> Prefix:
        """The prompt's fixed prefix, or () when it has none that tokenises apart from the rest."""
        if not messages:
            return ()
        key = (tuple((m["role"], m["content"]) for m in messages[:-1]), messages[-1]["role"])
        with self._lock:
            prefix = self._known.get(key)
        if prefix is None:
            prefix = self._render(messages)
            with self._lock:
                if len(self._known) >= self._max_entries:
                    self._known.clear()
                self._known[key] = prefix
        n = len(prefix)
        if n == 0 or n >= len(prompt_ids) or tuple(prompt_ids[:n]) != prefix:
            return ()
        return prefix

    def _render(self, messages: Sequence[Mapping[str, str]]) -> Prefix:
        last = {"role": messages[-1]["role"], "content": _SENTINEL}
        text: Any = self._tokenizer.apply_chat_template(
            [dict(m) for m in messages[:-1]] + [last], add_generation_prompt=True, tokenize=False
        )
        cut = str(text).find(_SENTINEL)
        if cut <= 0:
            return ()
        return tuple(int(i) for i in self._tokenizer.encode(str(text)[:cut], add_special_tokens=False))
