"""Observed provider latency as an exponentially weighted moving average (for URGENT ordering)."""

from __future__ import annotations


class LatencyTracker:
    def __init__(self, alpha: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self._alpha = alpha
        self._ewma: dict[str, float] = {}

    def observe(self, provider: str, latency_ms: float) -> None:
        prev = self._ewma.get(provider)
        self._ewma[provider] = latency_ms if prev is None else prev + self._alpha * (latency_ms - prev)

    def get(self, provider: str) -> float | None:
        return self._ewma.get(provider)
