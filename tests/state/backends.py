"""Build each state store on each backend, for the suites that every backend must pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BACKENDS = ["sqlite", "redis"]


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
    """Where one backend keeps its state: a SQLite folder or a Redis client and key prefix."""

    backend: str
    path: Path
    redis: Any = None
    prefix: str = ""


def site(request: pytest.FixtureRequest, tmp_path: Path, backend: str | None = None) -> Site:
    """The Site for `backend` (default: the fixture's param); Redis fixtures are only pulled in for redis."""
    backend = backend or request.param
    if backend == "redis":
        return Site(backend, tmp_path, request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix"))
    return Site(backend, tmp_path)
