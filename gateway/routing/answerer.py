"""What the servicer needs from a router: the Router itself, or a decorator around it (cache, recording)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from gateway.core.contracts import Delta, ModelEntry, Request, Result


class Answerer(Protocol):
    async def generate(self, request: Request) -> Result: ...

    def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        """Delta pieces, then exactly one Result."""
        ...

    def models(self) -> list[ModelEntry]: ...
