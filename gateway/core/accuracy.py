"""Live accuracy of the answers a task keeps locally, as the audit measures it: an estimate and its interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959964


@dataclass(frozen=True, slots=True)
class LiveAccuracy:
    task: str
    threshold: float  # in force while these audits were taken
    audited: int
    agreed: int
    low: float  # 95 % Wilson interval of the accuracy of answers kept locally
    high: float
    target: float

    @property
    def estimate(self) -> float:
        return self.agreed / self.audited if self.audited else math.nan


def wilson(agreed: int, audited: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a proportion; (0, 1) with no observations."""
    if audited == 0:
        return 0.0, 1.0
    p = agreed / audited
    denominator = 1 + z * z / audited
    centre = (p + z * z / (2 * audited)) / denominator
    half = z * math.sqrt(p * (1 - p) / audited + z * z / (4 * audited * audited)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)
