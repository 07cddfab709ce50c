"""Live accuracy of the answers a task keeps locally, as the audit measures it: an estimate and its bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.binomial import lower_bound, upper_bound
from gateway.core.guarantee import DEFAULT_LEVEL


@dataclass(frozen=True, slots=True)
class LiveAccuracy:
    task: str
    threshold: float  # in force while these audits were taken
    audited: int
    agreed: int
    low: float  # one-sided Clopper-Pearson bounds at the audit's level (95 %) on the accuracy of answers kept locally
    high: float
    target: float

    @property
    def estimate(self) -> float:
        return self.agreed / self.audited if self.audited else math.nan


def bounds(agreed: int, audited: int, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """The one-sided Clopper-Pearson lower and upper bounds at `level`, the bounds thresholds are
    chosen with (gateway.core.guarantee); (0, 1) with no observations."""
    return lower_bound(agreed, audited, level), upper_bound(agreed, audited, level)
