"""Post-hoc temperature scaling over the label set, fitted on the validation split.

The gateway applies it as gateway.core.confidence.label_probabilities does: each label's
probability p becomes p ** (1 / T), renormalised over the labels. T > 1 softens an
over-confident model, T < 1 sharpens an under-confident one.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

_FLOOR = 1e-12


def scaled(probs: npt.NDArray[np.float64], temperature: float) -> npt.NDArray[np.float64]:
    """p ** (1/T) renormalised per row (rows summing to 0 stay 0)."""
    logp = np.log(np.clip(probs, _FLOOR, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    out /= out.sum(axis=1, keepdims=True)
    return np.where(probs.sum(axis=1, keepdims=True) > 0, out, 0.0)


def nll(probs: npt.NDArray[np.float64], gold: npt.NDArray[np.int64], temperature: float) -> float:
    p = scaled(probs, temperature)[np.arange(len(gold)), gold]
    return float(-np.mean(np.log(np.clip(p, _FLOOR, 1.0))))


def fit_temperature(
    probs: npt.NDArray[np.float64], gold: npt.NDArray[np.int64], low: float = 0.05, high: float = 20.0
) -> float:
    """The T in [low, high] that minimises the negative log-likelihood of the true labels
    (golden-section search over log T; NLL is unimodal in T for this family)."""
    usable = probs.sum(axis=1) > 0
    probs, gold = probs[usable], gold[usable]
    if len(gold) == 0:
        return 1.0
    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(probs, gold, math.exp(c)), nll(probs, gold, math.exp(d))
    for _ in range(60):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(probs, gold, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(probs, gold, math.exp(d))
    return round(math.exp((a + b) / 2), 4)
