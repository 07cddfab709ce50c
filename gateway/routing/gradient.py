"""A concurrency limit that follows observed latency: Netflix's Gradient2 rule.

After every answer the limit moves by the ratio of the long-term latency (a slow
moving average) to the latest one:

    gradient  = clamp(tolerance x long_rtt / rtt, 0.5, 1.0)
    new_limit = limit x gradient + sqrt(limit)
    limit     = limit x (1 - smoothing) + new_limit x smoothing, within [min_limit, max_limit]

While the tier answers as fast as it usually does the gradient is 1 and the limit
grows by about sqrt(limit) x smoothing per answer; once answers slow down past
`tolerance` times the usual, it shrinks (at most by half per step before smoothing).
A tier that is not using half its limit teaches nothing about it: the limit stays.
When the short and long averages drift apart for long (a tier that got durably
slower or faster) the long one is pulled toward the short one, so the limit
recovers instead of staying pinned at its minimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GradientSettings:
    initial: float = 20.0
    min_limit: float = 2.0
    max_limit: float = 1000.0
    smoothing: float = 0.2  # how far one answer moves the limit toward the new estimate
    tolerance: float = 1.5  # answers up to this many times slower than usual still count as "as usual"
    long_window: int = 600  # answers in the long-term latency average

    def __post_init__(self) -> None:
        if not 0 < self.min_limit <= self.initial <= self.max_limit:
            raise ValueError(
                f"limits: need 0 < min_limit <= initial <= max_limit, got {self.min_limit}, {self.initial}, "
                f"{self.max_limit}"
            )
        if not 0 < self.smoothing <= 1:
            raise ValueError(f"smoothing: {self.smoothing} must be in (0, 1]")
        if self.tolerance < 1:
            raise ValueError(f"tolerance: {self.tolerance} must be at least 1")
        if self.long_window < 1:
            raise ValueError(f"long_window: {self.long_window} must be at least 1")


class GradientLimit:
    """One tier's limit. Not thread-safe: used from the event loop only."""

    def __init__(self, settings: GradientSettings | None = None) -> None:
        self._settings = settings or GradientSettings()
        self._limit = self._settings.initial
        self._long_rtt: float | None = None
        self._short_rtt: float | None = None  # recent answers, for the wait estimate
        self._samples = 0

    @property
    def limit(self) -> int:
        """Requests the tier may hold at once now (at least 1)."""
        return max(1, int(self._limit))

    @property
    def rtt_s(self) -> float | None:
        """The recent answer time (seconds; a fast moving average), None before the first answer."""
        return self._short_rtt

    def on_answer(self, rtt_s: float, in_flight: int) -> None:
        """Take one answer's time, with the requests the tier held when it was sent (this one included)."""
        s = self._settings
        rtt_s = max(rtt_s, 1e-6)
        self._samples += 1
        warmup = min(self._samples, s.long_window)
        self._long_rtt = rtt_s if self._long_rtt is None else self._long_rtt + (rtt_s - self._long_rtt) / warmup
        self._short_rtt = rtt_s if self._short_rtt is None else self._short_rtt + (rtt_s - self._short_rtt) * 0.2
        if self._long_rtt / rtt_s > 2:  # the tier got much faster: forget the slow past sooner
            self._long_rtt *= 0.95
        if in_flight < self._limit / 2:  # not using the limit: nothing learnt about it
            return
        gradient = max(0.5, min(1.0, s.tolerance * self._long_rtt / rtt_s))
        estimate = self._limit * gradient + math.sqrt(self._limit)
        limit = self._limit * (1 - s.smoothing) + estimate * s.smoothing
        self._limit = max(s.min_limit, min(s.max_limit, limit))

    def on_dropped(self) -> None:
        """The tier failed under load (timed out, said it was busy): halve the limit, as for a much slower answer."""
        s = self._settings
        limit = self._limit * (1 - s.smoothing) + (self._limit * 0.5) * s.smoothing
        self._limit = max(s.min_limit, limit)
