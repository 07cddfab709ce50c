"""How far behind the event loop runs: the delay of a short periodic timer, measured continuously.

A loop short of CPU runs every ready callback late; a call answered now is written out at least this
late. Admission (routing/admission.py) refuses at once a call with less time left than the lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

TICK_S = 0.02


class LoopLag:
    """The latest lag, smoothed a little (seconds). Start it on the loop it measures; aclose it there."""

    def __init__(self, tick_s: float = TICK_S, alpha: float = 0.5) -> None:
        self._tick_s = tick_s
        self._alpha = alpha
        self._lag_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def seconds(self) -> float:
        return self._lag_s

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def observe(self, late_s: float) -> None:
        """One tick's delay past its due time."""
        self._lag_s += (max(0.0, late_s) - self._lag_s) * self._alpha

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            due = time.perf_counter() + self._tick_s
            await asyncio.sleep(self._tick_s)
            self.observe(time.perf_counter() - due)
