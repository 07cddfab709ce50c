"""Classification and calibration metrics on plain arrays (numpy only).

Predictions are label indices, with -1 for an answer that is not a label (always wrong).
`confidence` is what the gateway compares with the threshold; an answer is kept locally
when confidence >= threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]


def accuracy(gold: Ints, pred: Ints) -> float:
    return float(np.mean(gold == pred)) if len(gold) else float("nan")


def confusion(gold: Ints, pred: Ints, n_labels: int) -> npt.NDArray[np.int64]:
    """Rows: true label; columns: answered label, plus a last column for "not a label"."""
    matrix = np.zeros((n_labels, n_labels + 1), dtype=np.int64)
    for g, p in zip(gold, pred, strict=True):
        matrix[g, p if p >= 0 else n_labels] += 1
    return matrix


def macro_f1(gold: Ints, pred: Ints, n_labels: int) -> float:
    """Mean F1 over the labels (a label never predicted nor present scores 0)."""
    scores = []
    for k in range(n_labels):
        tp = int(np.sum((pred == k) & (gold == k)))
        fp = int(np.sum((pred == k) & (gold != k)))
        fn = int(np.sum((pred != k) & (gold == k)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def auroc(score: Floats, positive: Bools) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    pos, neg = int(np.sum(positive)), int(np.sum(~positive))
    if pos == 0 or neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    i = 0
    while i < len(score):  # average ranks over ties
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[positive].sum() - pos * (pos + 1) / 2) / (pos * neg))


@dataclass(frozen=True, slots=True)
class Reliability:
    edges: tuple[float, ...]  # bins edges, len = bins + 1
    counts: tuple[int, ...]
    confidence: tuple[float, ...]  # mean confidence per bin (nan when empty)
    accuracy: tuple[float, ...]  # accuracy per bin (nan when empty)
    ece: float


def reliability(confidence: Floats, correct: Bools, bins: int = 10) -> Reliability:
    """Equal-width bins over [0, 1]; ECE = sum over bins of share * |accuracy - mean confidence|."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts, confs, accs = [], [], []
    ece = 0.0
    for b in range(bins):
        members = index == b
        n = int(members.sum())
        counts.append(n)
        if n == 0:
            confs.append(float("nan"))
            accs.append(float("nan"))
            continue
        c, a = float(confidence[members].mean()), float(correct[members].mean())
        confs.append(c)
        accs.append(a)
        ece += n / len(confidence) * abs(a - c)
    return Reliability(tuple(edges.tolist()), tuple(counts), tuple(confs), tuple(accs), ece)


def ece(confidence: Floats, correct: Bools, bins: int = 10) -> float:
    return reliability(confidence, correct, bins).ece


@dataclass(frozen=True, slots=True)
class RiskCoverage:
    coverage: tuple[float, ...]  # share kept when keeping everything at or above each distinct confidence
    risk: tuple[float, ...]  # error rate among the kept
    thresholds: tuple[float, ...]  # that confidence

    def aurc(self) -> float:
        """Area under the risk-coverage curve (lower is better)."""
        if not self.coverage:
            return float("nan")
        return float(np.trapezoid([self.risk[0], *self.risk], [0.0, *self.coverage]))


def risk_coverage(confidence: Floats, correct: Bools) -> RiskCoverage:
    """One point per distinct confidence, from the most confident down (ties kept together)."""
    order = np.argsort(-confidence, kind="mergesort")
    conf, corr = confidence[order], correct[order]
    cov, risk, thr = [], [], []
    n = len(conf)
    kept_correct = 0
    for i in range(n):
        kept_correct += int(corr[i])
        if i + 1 < n and conf[i + 1] == conf[i]:
            continue
        cov.append((i + 1) / n)
        risk.append(1 - kept_correct / (i + 1))
        thr.append(float(conf[i]))
    return RiskCoverage(tuple(cov), tuple(risk), tuple(thr))


@dataclass(frozen=True, slots=True)
class Selective:
    threshold: float
    coverage: float  # share kept locally
    accuracy: float  # accuracy of the kept (nan when none is kept)


def selective(confidence: Floats, correct: Bools, threshold: float) -> Selective:
    kept = confidence >= threshold
    n = int(kept.sum())
    return Selective(
        threshold, n / len(confidence) if len(confidence) else 0.0, float(correct[kept].mean()) if n else float("nan")
    )


def coverage_at_target(confidence: Floats, correct: Bools, target: float, min_kept: int = 20) -> Selective:
    """The lowest threshold whose kept answers reach `target` accuracy on these rows, i.e. the most kept.

    An in-sample figure, for comparing two models on the same rows (finetune.evaluate.rivalry):
    taken as a served threshold it keeps answers below `target` about half the time. Served
    thresholds come from gateway.core.guarantee.choose_threshold.
    Only thresholds that keep at least `min_kept` answers count (a handful is no evidence).
    When none qualifies the threshold is 1.0 and nothing is counted as kept.
    """
    curve = risk_coverage(confidence, correct)
    best: Selective | None = None
    n = len(confidence)
    for cov, risk, thr in zip(curve.coverage, curve.risk, curve.thresholds, strict=True):
        if round(cov * n) >= min_kept and 1 - risk >= target:
            best = Selective(thr, cov, 1 - risk)
    return best or selective(confidence, correct, 1.0)
