"""Draining on SIGTERM: calls already in flight finish, new ones are refused with UNAVAILABLE.

grpc.aio's own `server.stop(grace)` lets in-flight calls finish too, but a call that
arrives once it has begun may come back CANCELLED, which a client cannot tell from a
call that ran. So the servicer counts its calls; on SIGTERM the gateway first refuses
new ones with a retryable UNAVAILABLE and waits for the count to reach zero (within
the grace), and only then stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

DRAINING = "the gateway is draining (shutting down); retry on another replica"


class Drain:
    def __init__(self) -> None:
        self._active = 0
        self._draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return self._active

    @property
    def draining(self) -> bool:
        """True once `finish` was called: new calls are to be refused with UNAVAILABLE (DRAINING)."""
        return self._draining

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Around each call: counted in flight until it ends."""
        self._active += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def finish(self, grace_s: float) -> bool:
        """Refuse new calls from now on; wait up to `grace_s` for those in flight. True when none is left."""
        self._draining = True
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), grace_s)
        except TimeoutError:
            return False
        return True
