"""Time as the remote tier sees it: UTC wall time for budget days, a monotonic clock for deadlines.

Injected everywhere so tests can move across UTC midnight or through a breaker
cooldown without sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Clock:
    wall: Callable[[], datetime] = utc_now  # timezone-aware UTC
    monotonic: Callable[[], float] = time.monotonic  # same base as Request.deadline


SYSTEM_CLOCK = Clock()
