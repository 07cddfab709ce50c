"""The bar a task clears before it joins the default run: on held-out data (symbols, or subjects,
never trained on), its adapter's accuracy beats the share of the most frequent label there,
the accuracy of always giving that one answer. Beats means with confidence: the one-sided
Clopper-Pearson lower bound on the held-out accuracy, at ADMISSION_LEVEL, is above that share.
"""

from __future__ import annotations

from dataclasses import dataclass

from finetune.evaluate.evaluation import Evaluation
from finetune.examples import HELDOUT
from gateway.core.binomial import lower_bound

ADMISSION_LEVEL = 0.95


@dataclass(frozen=True, slots=True)
class HeldoutVerdict:
    task: str
    rows: int
    correct: int
    majority_label: str  # the held-out split's most frequent label
    majority_share: float  # its share of the held-out rows
    lower_bound: float  # Clopper-Pearson lower bound on the held-out accuracy at ADMISSION_LEVEL

    @property
    def accuracy(self) -> float:
        return self.correct / self.rows

    @property
    def beats_majority(self) -> bool:
        return self.lower_bound > self.majority_share

    def line(self) -> str:
        verdict = "beats" if self.beats_majority else "does NOT beat"
        return (
            f"{self.task}: held-out accuracy {self.accuracy:.3f} ({self.correct} of {self.rows}, lower bound "
            f"{self.lower_bound:.3f} at {ADMISSION_LEVEL:.0%}) {verdict} its majority share {self.majority_share:.3f} "
            f"('{self.majority_label}')"
        )


def heldout_verdict(evaluation: Evaluation) -> HeldoutVerdict | None:
    """The adapter against its majority share on the held-out split (None: the task has none)."""
    report = evaluation.adapter.get(HELDOUT)
    if report is None or not report.n:
        return None
    rows = [sum(row) for row in report.confusion]
    top = max(range(len(rows)), key=rows.__getitem__)
    correct = sum(report.confusion[i][i] for i in range(len(rows)))
    return HeldoutVerdict(
        evaluation.task,
        report.n,
        correct,
        evaluation.labels[top],
        rows[top] / report.n,
        lower_bound(correct, report.n, ADMISSION_LEVEL),
    )
