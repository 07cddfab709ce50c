"""Confidence in [0, 1] from token log-probabilities.

Label tasks: the probability of the chosen label, renormalised over the label set
(optionally temperature-scaled, with the temperature fitted on a validation
split and stored in the adapter card). Free text: a low quantile of the
generated tokens' probabilities, which a single unsure token pulls down, unlike
the sequence product, which punishes length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.core.contracts import TokenLogprob


@dataclass(frozen=True, slots=True)
class Score:
    confidence: float | None  # None: the backend reported no logprobs
    label: str | None = None  # label tasks: the label the answer chose, if any


def choose_label(text: str, labels: Sequence[str]) -> str | None:
    """The label the answer starts with (case-insensitive, longest match), or None."""
    answer = text.strip().lower()
    matches = [label for label in labels if answer.startswith(label.lower())]
    return max(matches, key=len) if matches else None


def label_probabilities(first: TokenLogprob, labels: Sequence[str], temperature: float = 1.0) -> dict[str, float]:
    """Each label's probability at the first answer position, renormalised over the label set.

    A token counts for a label when its stripped, lower-cased text is a prefix of
    that label and of no other label. Variants (" up", "Up") add up.
    """
    alternatives: dict[str, float] = dict(first.top)
    alternatives[first.token] = first.logprob
    lowered = [label.lower() for label in labels]
    mass = dict.fromkeys(labels, 0.0)
    for token, logprob in alternatives.items():
        piece = token.strip().lower()
        if not piece:
            continue
        owners = [label for label, low in zip(labels, lowered, strict=True) if low.startswith(piece)]
        if len(owners) == 1:
            mass[owners[0]] += math.exp(logprob)
    if temperature != 1.0:
        mass = {label: p ** (1.0 / temperature) if p > 0 else 0.0 for label, p in mass.items()}
    total = sum(mass.values())
    return {label: (p / total if total > 0 else 0.0) for label, p in mass.items()}


def quantile_confidence(tokens: Sequence[TokenLogprob], quantile: float) -> float | None:
    """The `quantile` of the generated tokens' probabilities (linear interpolation)."""
    if not tokens:
        return None
    probs = sorted(math.exp(t.logprob) for t in tokens)
    pos = quantile * (len(probs) - 1)
    low = math.floor(pos)
    high = min(low + 1, len(probs) - 1)
    return probs[low] + (probs[high] - probs[low]) * (pos - low)


def score(
    text: str,
    tokens: Sequence[TokenLogprob],
    labels: Sequence[str] = (),
    *,
    quantile: float = 0.1,
    temperature: float = 1.0,
) -> Score:
    """Confidence for one answer: label renormalisation when labels are given, else a quantile."""
    if not labels:
        return Score(quantile_confidence(tokens, quantile))
    label = choose_label(text, labels)
    if not tokens:
        return Score(None, label)
    if label is None:
        return Score(0.0, None)  # the answer is not one of the labels: no confidence in it
    probs = label_probabilities(tokens[0], labels, temperature)
    return Score(_clamp(probs[label]), label)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
