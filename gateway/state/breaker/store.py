"""What the remote tier asks of provider health: one circuit breaker per provider.

Implementations keep each provider's record and run the state machine in
machine.py: memory.py (one process, the default), sqlite.py (processes on one
box), redis.py (every replica).
"""

from __future__ import annotations

from typing import Protocol

from gateway.state.breaker.machine import BreakerState, Permit


class ProviderBreakers(Protocol):
    """The calls RemoteTier makes."""

    async def allow(self, provider: str) -> Permit | None: ...

    async def release(self, provider: str, permit: Permit) -> None: ...

    async def record_success(self, provider: str) -> None: ...

    async def record_failure(self, provider: str) -> None: ...

    async def block_for(self, provider: str, seconds: float) -> None: ...

    async def state(self, provider: str) -> BreakerState: ...

    async def describe(self, provider: str) -> str: ...


class BreakerStore(ProviderBreakers, Protocol):
    """ProviderBreakers, plus what the metrics gauge and shutdown need."""

    async def states(self) -> dict[str, BreakerState]:
        """Every provider the store has seen, for the breaker-state gauge."""
        ...

    async def aclose(self) -> None: ...
