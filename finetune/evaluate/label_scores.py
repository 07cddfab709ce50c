"""What evaluation needs of a model's answers to labelled rows, whatever kind of model gave them.

`LabelScores` is what finetune.evaluate.evaluation and rivalry read: the true and answered label
of each row, the confidence of each answer at a temperature, and the label probabilities the
temperature is fitted on. A LoRA adapter's answers (finetune.evaluate.scoring.Scored) and a
classifier's probabilities (`ProbScores`) both provide it, so both kinds are measured by the same
code: the same calibration, the same guaranteed threshold, the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from finetune.evaluate.calibrate import scaled


class LabelScores(Protocol):
    @property
    def labels(self) -> tuple[str, ...]: ...

    @property
    def gold(self) -> npt.NDArray[np.int64]:
        """Index of the true label of each row."""
        ...

    @property
    def pred(self) -> npt.NDArray[np.int64]:
        """Index of the answered label of each row; -1 when the answer is not a label."""
        ...

    @property
    def correct(self) -> npt.NDArray[np.bool_]: ...

    def __len__(self) -> int: ...

    def confidence(self, temperature: float = 1.0) -> npt.NDArray[np.float64]:
        """The confidence of each answer at `temperature` (0 when the answer is not a label)."""
        ...

    def label_probs(self) -> npt.NDArray[np.float64]:
        """Label probabilities (rows, labels) at temperature 1: what the temperature is fitted on."""
        ...

    def subset(self, rows: Sequence[int]) -> LabelScores:
        """The same answers for `rows` only, in that order."""
        ...


@dataclass(frozen=True, eq=False)
class ProbScores:
    """A classifier's answers: the label with the highest probability, its confidence that
    probability after temperature scaling (p ** (1/T) renormalised over the labels, which for a
    softmax is the softmax of its logits divided by T)."""

    labels: tuple[str, ...]
    gold: npt.NDArray[np.int64]
    probs: npt.NDArray[np.float64]  # (rows, labels), each row sums to 1

    def __post_init__(self) -> None:
        if self.probs.shape != (len(self.gold), len(self.labels)):
            raise ValueError(f"probabilities of shape {self.probs.shape} for {len(self.gold)} rows of {self.labels}")

    def __len__(self) -> int:
        return len(self.gold)

    @property
    def pred(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.probs.argmax(axis=1), dtype=np.int64)

    @property
    def correct(self) -> npt.NDArray[np.bool_]:
        return np.asarray(self.pred == self.gold, dtype=np.bool_)

    def confidence(self, temperature: float = 1.0) -> npt.NDArray[np.float64]:
        if not len(self):
            return np.zeros(0)
        return np.asarray(scaled(self.probs, temperature).max(axis=1), dtype=np.float64)

    def label_probs(self) -> npt.NDArray[np.float64]:
        return self.probs

    def subset(self, rows: Sequence[int]) -> ProbScores:
        index = np.asarray(rows, dtype=np.int64)
        return ProbScores(self.labels, self.gold[index], self.probs[index])


def by_group(scores: LabelScores, groups: Sequence[str], wanted: Sequence[str]) -> dict[str, LabelScores]:
    """`scores` cut by the group of each row (`groups`, in row order): one entry per wanted group that has rows."""
    if len(groups) != len(scores):
        raise ValueError(f"{len(groups)} groups for {len(scores)} rows")
    out: dict[str, LabelScores] = {}
    for group in wanted:
        rows = [i for i, g in enumerate(groups) if g == group]
        if rows:
            out[group] = scores.subset(rows)
    return out
