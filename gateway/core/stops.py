"""Stop sequences applied to generated text: for backends that decode themselves (transformers, echo)
and for any answer whose backend may overshoot. Pure functions over strings.

An answer ends before the first occurrence of any stop sequence, which is not part of the text
(OpenAI's `stop`). A stream holds back the tail of its text that could still become a stop
sequence, so no piece of one ever reaches the client.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_STOPS = 4  # OpenAI's limit, which every provider accepts


def first_stop(text: str, stops: Sequence[str]) -> int | None:
    """Where the earliest stop sequence in `text` begins; None when there is none."""
    found = [index for index in (text.find(stop) for stop in stops if stop) if index >= 0]
    return min(found, default=None)


def cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(`text` up to its first stop sequence, whether one was found)."""
    index = first_stop(text, stops)
    return (text, False) if index is None else (text[:index], True)


def safe_length(text: str, stops: Sequence[str]) -> int:
    """How much of `text` (which holds no stop sequence) may be sent now: all but its longest tail that
    is the start of a stop sequence, which the next tokens could complete."""
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), held, -1):
            if text.endswith(stop[:size]):
                held = size
                break
    return len(text) - held
