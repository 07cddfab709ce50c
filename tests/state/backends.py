"""The types the state suites' fixtures (tests/state/conftest.py) hand to their tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar


class _Store(Protocol):
    async def aclose(self) -> None: ...


S = TypeVar("S", bound=_Store)


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


@dataclass
class Closer:
    """Keeps the stores a test opens (`closing(store)` returns the store), to close them when it ends."""

    opened: list[_Store] = field(default_factory=list)

    def __call__(self, store: S) -> S:
        self.opened.append(store)
        return store

    async def aclose(self) -> None:
        for store in self.opened:
            await store.aclose()
