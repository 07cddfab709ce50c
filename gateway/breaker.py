"""A circuit breaker per provider: opens after N failures within a window, then lets one probe through.

closed --N failures in window_s--> open --cooldown_s--> half-open (one probe)
half-open --probe ok--> closed;  half-open --probe fails--> open again.
A provider can also be blocked for a while on its own word (429 + Retry-After).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to call the provider; `probe` marks the single half-open trial."""

    probe: bool


class CircuitBreaker:
    def __init__(self, settings: BreakerSettings, monotonic: Callable[[], float]) -> None:
        self._settings = settings
        self._now = monotonic
        self._failures: deque[float] = deque()
        self._opened_at: float | None = None
        self._probe_in_flight = False
        self._blocked_until = 0.0

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._now() - self._opened_at >= self._settings.cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def ready(self) -> bool:
        """Whether `allow()` would grant a permit now (no side effects)."""
        if self._now() < self._blocked_until:
            return False
        state = self.state
        return state is BreakerState.CLOSED or (state is BreakerState.HALF_OPEN and not self._probe_in_flight)

    def allow(self) -> Permit | None:
        """A permit to call now, or None while open (or while the half-open probe is out)."""
        now = self._now()
        if now < self._blocked_until:
            return None
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(probe=False)
        if state is BreakerState.OPEN or self._probe_in_flight:
            return None
        self._probe_in_flight = True
        return Permit(probe=True)

    def release(self, permit: Permit) -> None:
        """The permit was not used (skipped for budget or rate): free the probe slot."""
        if permit.probe:
            self._probe_in_flight = False

    def record_success(self) -> None:
        self._failures.clear()
        self._opened_at = None
        self._probe_in_flight = False

    def record_failure(self) -> None:
        now = self._now()
        if self._opened_at is not None:  # a failed probe (or a straggler): open for another cooldown
            self._opened_at = now
            self._probe_in_flight = False
            return
        self._failures.append(now)
        while self._failures and self._failures[0] <= now - self._settings.window_s:
            self._failures.popleft()
        if len(self._failures) >= self._settings.failures:
            self._opened_at = now
            self._failures.clear()

    def block_for(self, seconds: float) -> None:
        """Refuse calls for `seconds` (the provider asked us to wait that long)."""
        self._blocked_until = max(self._blocked_until, self._now() + seconds)

    def describe(self) -> str:
        now = self._now()
        if now < self._blocked_until:
            return f"provider asked to wait {self._blocked_until - now:.1f} s more (Retry-After)"
        if self._opened_at is not None:
            left = self._opened_at + self._settings.cooldown_s - now
            if left > 0:
                return (
                    f"circuit open after {self._settings.failures} failures within {self._settings.window_s:g} s; "
                    f"next probe in {left:.1f} s"
                )
            return "circuit half-open; a probe request is in flight"
        return "circuit closed"
