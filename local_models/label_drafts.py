"""Label answers in one verification pass instead of a decode loop.

After the prefill picks an answer's first token, the rest of the answer is very
likely the rest of the label that token starts (" bull" -> "ish"), then the end
of the turn. So the label's remaining tokens are fed in one forward pass, and
the greedy token at each position is read from that pass: as long as each one
equals the next fed token, it is exactly what greedy decoding would have chosen
step by step. An answer is taken from the pass only when it ends there (the end
token, or max_tokens reached); any other answer is decoded as usual.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

Draft = tuple[int, ...]


def label_drafts(tokenizer: Any, labels: Sequence[str]) -> dict[int, Draft]:
    """First token id -> the token ids of the longest label surface form that starts with it.

    The surface forms are those the backend reports at the first position ("up", " up", "Up").
    """
    drafts: dict[int, Draft] = {}
    for label in labels:
        for form in {label, label.lower(), label.capitalize(), " " + label, " " + label.lower()}:
            ids = tuple(int(i) for i in tokenizer.encode(form, add_special_tokens=False))
            if ids and len(ids) > len(drafts.get(ids[0], ())):
                drafts[ids[0]] = ids
    return drafts


def greedy_steps(draft: Draft, greedy: Sequence[int], eos: Collection[int], max_tokens: int) -> int | None:
    """How many of the pass's greedy tokens finish the answer, or None when the pass cannot finish it.

    `draft` is what was fed: the answer's first token, then the guessed rest. `greedy[j]` is
    the most likely token after draft[: j + 1]. The answer already holds draft[0] and is not
    finished. Replaying greedy[0 : n] step by step then ends the answer with the end token
    or at max_tokens, exactly as greedy decoding would.
    """
    for j, token in enumerate(greedy[: len(draft)]):
        if token in eos or j + 2 >= max_tokens:
            return j + 1
        if j + 1 >= len(draft) or token != draft[j + 1]:
            return None
    return None
