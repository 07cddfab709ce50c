"""Circuit breakers in one process: the records in a dict, driven by the shared state machine.

The remote tier's default when no shared store is configured, and the reference the shared
suite holds the SQLite and Redis stores to.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.state.breaker import machine
from gateway.state.breaker.machine import BreakerRecord, BreakerSettings, BreakerState, Permit


class MemoryBreakerStore:
    """Breaker records in a dict: one process (monotonic or wall clock, as the caller passes)."""

    def __init__(
        self, settings: BreakerSettings, *, lease_s: float | None = None, wall: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._lease_s = settings.cooldown_s if lease_s is None else lease_s
        self._wall = wall
        self._records: dict[str, BreakerRecord] = {}

    async def allow(self, provider: str) -> Permit | None:
        record, permit = machine.allow(self._get(provider), self._settings, self._wall(), self._lease_s)
        self._records[provider] = record
        return permit

    async def release(self, provider: str, permit: Permit) -> None:
        self._records[provider] = machine.release(self._get(provider), permit)

    async def record_success(self, provider: str) -> None:
        self._records[provider] = machine.succeed(self._get(provider))

    async def record_failure(self, provider: str) -> None:
        self._records[provider] = machine.fail(self._get(provider), self._settings, self._wall())

    async def block_for(self, provider: str, seconds: float) -> None:
        self._records[provider] = machine.block(self._get(provider), seconds, self._wall())

    async def state(self, provider: str) -> BreakerState:
        return machine.visible(self._get(provider), self._settings, self._wall())

    async def describe(self, provider: str) -> str:
        return machine.describe(self._get(provider), self._settings, self._wall())

    async def states(self) -> dict[str, BreakerState]:
        now = self._wall()
        return {name: machine.visible(record, self._settings, now) for name, record in self._records.items()}

    async def aclose(self) -> None:
        return None

    def _get(self, provider: str) -> BreakerRecord:
        return self._records.get(provider, BreakerRecord())
