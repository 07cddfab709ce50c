"""Thresholds with a finite-sample guarantee on the accuracy of the answers a task keeps locally.

An answer is kept when its confidence is at or above the task's threshold. The threshold is
chosen on validation rows by Learn-then-Test with fixed-sequence testing:

- the candidate thresholds are fixed in advance: 1.000, 0.999, ..., 0.000;
- each candidate λ is a hypothesis "the accuracy of the answers kept at λ is below `target`",
  tested with the exact binomial p-value of its kept rows, P(Binomial(kept, target) >= correct);
  it is rejected when that p-value is at most 1 - level, which is the same as its one-sided
  Clopper-Pearson lower bound being at least `target`;
- the candidates are tested from high to low, and the first one not rejected ends the scan.
  Testing in a fixed order and stopping at the first failure needs no correction for the
  number of thresholds scanned: the chance that any rejected candidate's kept accuracy is
  below `target` is at most 1 - level;
- the threshold is the highest rejected candidate that keeps the same validation rows as the
  lowest one rejected: the most the rows support, without reaching down into confidences no
  validation row had.

The scan starts at the highest candidate that keeps enough rows for a perfect record to pass
(and at least `min_kept`): which candidates are skipped depends on the confidences alone, not on
which answers were right. When no candidate passes, nothing is kept: the threshold is
ESCALATE_ALL, above every confidence, and every answer escalates.

The live audit uses the same bounds (`binomial.upper_bound`) on its own tally.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.core import binomial

DEFAULT_LEVEL = 0.95
GRID = 1000  # candidate thresholds are i / GRID
ESCALATE_ALL = math.nextafter(1.0, 2.0)  # above every confidence in [0, 1]: nothing is kept
METHOD = "learn-then-test, fixed sequence from high to low thresholds (0.001 grid), exact binomial p-values"

# the names of a guarantee's figures among a task's metrics (ListModels shows them)
TARGET, LEVEL, ROWS, KEPT, CORRECT, BOUND, THRESHOLD = (
    "guarantee_target",
    "guarantee_level",
    "guarantee_rows",
    "guarantee_kept",
    "guarantee_correct",
    "guarantee_bound",
    "guarantee_threshold",
)


@dataclass(frozen=True, slots=True)
class Guarantee:
    """A threshold and what it promises: the accuracy of the answers it keeps is at least `target`,
    with probability at least `level` over the draw of the validation rows it was chosen on."""

    threshold: float  # ESCALATE_ALL when the rows support none
    target: float
    level: float
    rows: int  # validation rows it was chosen on
    kept: int  # of those, kept at the threshold
    correct: int  # of the kept, answered right
    bound: float  # one-sided Clopper-Pearson lower bound on the kept accuracy at `level` (0 when none kept)

    @property
    def supported(self) -> bool:
        return self.threshold <= 1.0

    @property
    def coverage(self) -> float:
        return self.kept / self.rows if self.rows else 0.0

    @property
    def accuracy(self) -> float:
        return self.correct / self.kept if self.kept else math.nan

    def figures(self) -> dict[str, float]:
        """The guarantee as task metrics (read back by `from_figures`)."""
        return {
            TARGET: self.target,
            LEVEL: self.level,
            ROWS: float(self.rows),
            KEPT: float(self.kept),
            CORRECT: float(self.correct),
            BOUND: self.bound,
            THRESHOLD: self.threshold,
        }

    def describe(self) -> str:
        """One line: what the threshold promises, or that the rows support none (the bound rounded down)."""
        if not self.supported:
            return (
                f"no threshold supported: escalates everything (no kept set of the {self.rows} validation rows "
                f"has accuracy >= {self.target:g} at {self.level:.0%} confidence)"
            )
        bound = math.floor(self.bound * 1000) / 1000
        return (
            f"threshold {self.threshold:.3f}: kept accuracy >= {self.target:g} at {self.level:.0%} confidence "
            f"(lower bound {bound:.3f} on {self.kept} of {self.rows} validation rows kept, "
            f"coverage {self.coverage:.0%})"
        )


def from_figures(metrics: Mapping[str, float]) -> Guarantee | None:
    """The guarantee among a task's metrics; None when they hold none (a card from before guarantees)."""
    if any(key not in metrics for key in (THRESHOLD, TARGET, LEVEL, ROWS, KEPT, CORRECT, BOUND)):
        return None
    return Guarantee(
        threshold=float(metrics[THRESHOLD]),
        target=float(metrics[TARGET]),
        level=float(metrics[LEVEL]),
        rows=int(metrics[ROWS]),
        kept=int(metrics[KEPT]),
        correct=int(metrics[CORRECT]),
        bound=float(metrics[BOUND]),
    )


def supports(correct: int, kept: int, target: float, level: float) -> bool:
    """Whether `correct` right of `kept` rows show an accuracy of at least `target` at `level`: the exact
    binomial p-value P(Binomial(kept, target) >= correct) is at most 1 - level (the one-sided
    Clopper-Pearson lower bound is then at least `target`)."""
    return kept > 0 and binomial.tail(correct, kept, target) <= 1.0 - level


def fewest_rows(target: float, level: float) -> int:
    """The fewest kept rows whose bound can reach `target` at all, every one right: target**n <= 1 - level."""
    _check(target, level)
    return max(1, math.ceil(math.log(1.0 - level) / math.log(target) - 1e-9))


def choose_threshold(
    confidence: Sequence[float],
    correct: Sequence[bool],
    target: float,
    level: float = DEFAULT_LEVEL,
    min_kept: int = 1,
) -> Guarantee:
    """The threshold the fixed sequence supports on these rows, and what it promises (see the module docstring)."""
    _check(target, level)
    if len(confidence) != len(correct):
        raise ValueError(f"{len(confidence)} confidences but {len(correct)} correctness flags")
    rows = sorted(zip(confidence, correct, strict=True), key=lambda row: -row[0])
    start = max(min_kept, fewest_rows(target, level))
    kept = right = 0
    tested = -1  # kept count of the last test
    chosen: tuple[float, int, int] | None = None
    for step in range(GRID, -1, -1):
        threshold = step / GRID
        while kept < len(rows) and rows[kept][0] >= threshold:
            right += bool(rows[kept][1])
            kept += 1
        if kept < start:
            continue
        if kept == tested:
            continue  # the same rows: rejected again, and the higher candidate already chosen keeps them
        if not supports(right, kept, target, level):
            break
        tested = kept
        chosen = (threshold, kept, right)
    if chosen is None:
        return Guarantee(ESCALATE_ALL, target, level, len(rows), 0, 0, 0.0)
    threshold, kept, right = chosen
    return Guarantee(threshold, target, level, len(rows), kept, right, binomial.lower_bound(right, kept, level))


def _check(target: float, level: float) -> None:
    if not 0.0 < target < 1.0:
        raise ValueError(f"target accuracy must be within (0, 1), got {target}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be within (0, 1), got {level}")
