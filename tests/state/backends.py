"""The types the state suites' fixtures (tests/state/conftest.py) hand to their tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class WallClock:
    """Wall-clock seconds that tests move by hand."""

    now: float = 1_795_000_000.0  # 2026-11-18

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Site:
    """Where one backend keeps its state: a folder (memory, SQLite) or a Redis client and key prefix."""

    backend: str
    path: Path
    redis: Any = None
    prefix: str = ""
