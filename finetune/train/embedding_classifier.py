"""A multinomial logistic regression over sentence vectors: the embedding-classifier kind of local model.

The vectors are all-MiniLM-L6-v2's (mean-pooled, unit length; local_models/minilm.py). The model
is a weight matrix and a bias per label, trained by full-batch Nesterov gradient descent on the
mean cross-entropy plus an L2 penalty on the weights (a convex problem: the same rows and settings
give the same weights). The penalty is chosen by k-fold cross-validation on the training rows
alone, so the validation split stays for the temperature and the guaranteed threshold, as for a
LoRA adapter. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]

PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1)  # L2 penalties tried by cross-validation
FOLDS = 5
STEPS = 800


@dataclass(frozen=True, eq=False)
class SoftmaxRegression:
    """softmax(x @ weights + bias) over `labels`."""

    labels: tuple[str, ...]
    weights: Floats  # (dimensions, labels)
    bias: Floats  # (labels,)

    def __post_init__(self) -> None:
        if (
            self.weights.ndim != 2
            or self.weights.shape[1] != len(self.labels)
            or self.bias.shape != (len(self.labels),)
        ):
            raise ValueError(f"weights {self.weights.shape} and bias {self.bias.shape} do not fit {self.labels}")

    @property
    def dimensions(self) -> int:
        return int(self.weights.shape[0])

    def logits(self, vectors: Floats) -> Floats:
        return np.asarray(vectors, dtype=np.float64) @ self.weights + self.bias

    def probabilities(self, vectors: Floats) -> Floats:
        return softmax(self.logits(vectors))


@dataclass(frozen=True, slots=True)
class Fit:
    """The classifier and how its penalty was chosen."""

    model: SoftmaxRegression
    penalty: float
    cv_loss: dict[float, float]  # mean held-out-fold cross-entropy per penalty tried
    train_loss: float
    steps: int


def softmax(logits: Floats) -> Floats:
    shifted = logits - logits.max(axis=1, keepdims=True)
    out = np.exp(shifted)
    return np.asarray(out / out.sum(axis=1, keepdims=True), dtype=np.float64)


def cross_entropy(probs: Floats, gold: Ints) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(gold)), gold], 1e-12, 1.0))))


def train_softmax(
    vectors: Floats, gold: Ints, labels: Sequence[str], penalty: float, steps: int = STEPS
) -> SoftmaxRegression:
    """Minimise mean cross-entropy + penalty/2 * |weights|^2 by Nesterov gradient descent with step 1/L,
    L the gradient's Lipschitz constant (largest eigenvalue of X'X/n, plus the penalty). The rows are
    centred on their mean first (the vectors share a large common direction, which slows descent);
    the centre is folded back into the bias."""
    x = np.asarray(vectors, dtype=np.float64)
    centre = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
    x = x - centre
    n, k = len(x), len(labels)
    if n == 0:
        raise ValueError("no training rows")
    if gold.min() < 0 or gold.max() >= k:
        raise ValueError(f"gold labels outside 0..{k - 1}")
    design = np.hstack([x, np.ones((n, 1))])  # the bias as a last, unpenalised weight row
    onehot = np.eye(k)[gold]
    lipschitz = float(np.linalg.norm(design, 2) ** 2) / n + penalty
    rate = 1.0 / lipschitz
    mask = np.ones((design.shape[1], 1))
    mask[-1] = 0.0
    theta = np.zeros((design.shape[1], k))
    previous = theta
    for step in range(1, steps + 1):
        look = theta + (step - 2) / (step + 1) * (theta - previous) if step > 1 else theta
        grad = design.T @ (softmax(design @ look) - onehot) / n + penalty * mask * look
        previous, theta = theta, look - rate * grad
    weights = theta[:-1].copy()
    return SoftmaxRegression(tuple(labels), weights, theta[-1] - centre @ weights)


def folds(n: int, k: int = FOLDS) -> list[Ints]:
    """Row indices of k folds, row i in fold i mod k (rows arrive in a fixed order, so folds are stable)."""
    return [np.arange(start, n, k, dtype=np.int64) for start in range(min(k, n))]


def fit(
    vectors: Floats,
    gold: Ints,
    labels: Sequence[str],
    *,
    penalties: Sequence[float] = PENALTIES,
    steps: int = STEPS,
    n_folds: int = FOLDS,
) -> Fit:
    """The penalty with the lowest cross-validated cross-entropy on the training rows, then the
    classifier trained with it on all of them."""
    if not penalties:
        raise ValueError("no penalties to choose from")
    x = np.asarray(vectors, dtype=np.float64)
    losses: dict[float, float] = {}
    for penalty in penalties:
        fold_losses = []
        for held in folds(len(x), n_folds):
            keep = np.setdiff1d(np.arange(len(x)), held)
            if not len(keep) or not len(held):
                continue
            model = train_softmax(x[keep], gold[keep], labels, penalty, steps)
            fold_losses.append(cross_entropy(model.probabilities(x[held]), gold[held]))
        losses[penalty] = float(np.mean(fold_losses)) if fold_losses else math.inf
    best = min(penalties, key=lambda p: (losses[p], -p))  # a tie goes to the larger penalty
    model = train_softmax(x, gold, labels, best, steps)
    return Fit(model, best, losses, cross_entropy(model.probabilities(x), gold), steps)
