"""A clock tests move by hand: UTC wall time for budget days, monotonic time for breakers and windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.core.clock import Clock


@dataclass
class FakeClock:
    now: datetime = datetime(2026, 11, 25, 23, 59, 0, tzinfo=UTC)
    mono: float = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def clock(self) -> Clock:
        return Clock(wall=lambda: self.now, monotonic=lambda: self.mono)
