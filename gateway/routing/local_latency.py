"""The local tier's recent answer times, per task, and their p95: the default hedge delay.

Each task keeps its last `window` answer times in a ring buffer; the quantile is
recomputed from a sorted copy once every `recompute_every` new answers, so an
answer costs an append and a read costs a dict lookup. The window follows a
change of load, model or adapter within a few hundred answers. Nothing is
reported until `min_samples` answers have been seen (a cold tier is not hedged
on a guess).
"""

from __future__ import annotations

import math
from collections import deque


class _Window:
    __slots__ = ("cached", "since", "times")

    def __init__(self, size: int) -> None:
        self.times: deque[float] = deque(maxlen=size)
        self.since = 0  # answers added since `cached` was computed
        self.cached: float | None = None


class LocalLatency:
    def __init__(
        self, *, quantile: float = 0.95, window: int = 256, min_samples: int = 20, recompute_every: int = 16
    ) -> None:
        if not 0 < quantile <= 1:
            raise ValueError("quantile must be in (0, 1]")
        if window < min_samples or min_samples < 1 or recompute_every < 1:
            raise ValueError("need window >= min_samples >= 1 and recompute_every >= 1")
        self._quantile = quantile
        self._size = window
        self._min = min_samples
        self._every = recompute_every
        self._windows: dict[str, _Window] = {}  # one per task name (configured tasks only)

    def observe(self, task: str, seconds: float) -> None:
        window = self._windows.get(task)
        if window is None:
            window = self._windows[task] = _Window(self._size)
        window.times.append(seconds)
        window.since += 1
        if len(window.times) >= self._min and (window.cached is None or window.since >= self._every):
            ordered = sorted(window.times)
            window.cached = ordered[min(len(ordered) - 1, math.ceil(self._quantile * len(ordered)) - 1)]
            window.since = 0

    def quantile_s(self, task: str) -> float | None:
        """The quantile of `task`'s recent answer times in seconds; None before `min_samples` answers."""
        window = self._windows.get(task)
        return None if window is None else window.cached
