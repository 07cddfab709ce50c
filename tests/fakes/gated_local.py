"""A local backend that answers only when a test lets it: the slow local tier of the hedging tests.

`release()` lets the pending (and every later) request answer, with the
confidence `prob` gives its one label token. `started` is set when a request
arrives; `cancelled` counts requests cancelled while they waited.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.core.contracts import BackendCall, Completion, Delta, LocalLoad, StreamEvent, TokenLogprob, Usage


@dataclass
class GatedLocal:
    prob: float = 0.9  # probability of the answer "up" against "down"
    name: str = "gated"
    model: str = "tiny"
    context_length: int = 1024
    started: asyncio.Event = field(default_factory=asyncio.Event)
    gate: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled: int = 0
    in_flight: int = 0

    def release(self) -> None:
        self.gate.set()

    def load(self) -> LocalLoad:
        return LocalLoad(self.in_flight, 64, 0.0)

    async def generate(self, call: BackendCall) -> Completion:
        self.in_flight += 1
        self.started.set()
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
        tokens = (TokenLogprob("up", math.log(self.prob), {"down": math.log(1 - self.prob)}),)
        return Completion("up", self.name, self.model, Usage(5, 1), "stop", tokens)

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        completion = await self.generate(call)
        yield Delta(completion.text)
        yield completion

    async def aclose(self) -> None:
        return None
