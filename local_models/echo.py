"""An instant backend that answers with the last message's words: for benchmarks and tests.

Every token has log-probability 0 (confidence 1.0), so it never escalates on
confidence; `delay_ms` simulates work per request (requests never queue: each answers
after its delay, which `load()` reports as the finish estimate). `load().in_flight`
counts plain and streamed requests until they finish or are cancelled. Stop sequences end
the echo before the first of them, as any backend's answer ends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

from gateway.core import stops
from gateway.core.contracts import BackendCall, Completion, Delta, LocalLoad, StreamEvent, TokenLogprob, Usage
from gateway.core.errors import CapacityExceeded


class EchoBackend:
    name = "echo"
    supports_tools = False  # tools and tool turns go to the remote tier (gateway/routing/policy.py)
    model = "echo"
    context_length = 1 << 20

    def __init__(
        self,
        *,
        delay_ms: float = 0.0,
        max_in_flight: int = 100_000,
        tail_share: float = 0.0,
        tail_ms: float = 0.0,
        report_delay: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        """A plain answer takes `delay_ms`; a `tail_share` of them take longer, by an exponentially
        distributed extra of mean `tail_ms` (a heavy tail, for the hedging benchmark).
        `report_delay=False`: load() gives no finish estimate, so the capacity check admits requests
        whose deadline then passes mid-work (for tests of deadlines and cancellation)."""
        self._delay_s = delay_ms / 1000
        self._estimate_s = self._delay_s if report_delay else 0.0
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._tail_share = tail_share
        self._tail_rate = 1000 / tail_ms if tail_ms > 0 else 0.0
        self._rng = rng or random.Random()

    def load(self) -> LocalLoad:
        return LocalLoad(self._in_flight, self._max_in_flight, 0.0, est_prefill_s=self._estimate_s)  # no queue

    async def generate(self, call: BackendCall) -> Completion:
        words = self._words(call)
        if self._in_flight >= self._max_in_flight:
            raise CapacityExceeded(f"echo backend is at its in-flight limit ({self._max_in_flight})")
        self._in_flight += 1
        try:
            delay_s = self.next_delay_s()
            if delay_s:
                await asyncio.sleep(delay_s)
        finally:
            self._in_flight -= 1
        return self._completion(call, words)

    async def stream(self, call: BackendCall) -> AsyncIterator[StreamEvent]:
        words = self._words(call)
        text = self._text(call, words)
        if self._in_flight >= self._max_in_flight:
            raise CapacityExceeded(f"echo backend is at its in-flight limit ({self._max_in_flight})")
        self._in_flight += 1  # until the last word, or until the stream is closed or cancelled
        try:
            sent = 0
            for i, word in enumerate(words):
                if self._delay_s:
                    await asyncio.sleep(self._delay_s / max(len(words), 1))
                piece = (word if i == 0 else " " + word)[: max(len(text) - sent, 0)]
                if piece:
                    sent += len(piece)
                    yield Delta(piece)
        finally:
            self._in_flight -= 1
        yield self._completion(call, words)

    async def aclose(self) -> None:
        return None

    def next_delay_s(self) -> float:
        """How long the next plain answer takes: `delay_ms`, plus the tail's extra for a `tail_share` of them."""
        if self._tail_rate and self._rng.random() < self._tail_share:
            return self._delay_s + self._rng.expovariate(self._tail_rate)
        return self._delay_s

    def _words(self, call: BackendCall) -> list[str]:
        return call.messages[-1].content.split()[: call.max_tokens]

    @staticmethod
    def _text(call: BackendCall, words: list[str]) -> str:
        return stops.cut(" ".join(words), call.stop)[0]

    def _completion(self, call: BackendCall, words: list[str]) -> Completion:
        prompt = sum(len(m.content.split()) for m in call.messages)
        text = self._text(call, words)
        words = text.split()
        return Completion(
            text=text,
            provider=self.name,
            model=self.model,
            usage=Usage(prompt, len(words)),
            finish_reason="stop",
            tokens=tuple(TokenLogprob(w, 0.0) for w in words),
            queued_s=0.0,  # no queue: every call starts at once
        )
