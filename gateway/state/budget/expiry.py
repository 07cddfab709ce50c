"""Ends reservations nobody will settle: a call whose gateway stopped mid-call (SIGKILL, a crash, a lost host).

Every `every_s` (and once at start) the sweeper asks the ledger to settle, at
their estimate, the reservations older than `expiry_s`, and logs how many it
found. `expiry_s` must be longer than any provider call can last, so a live call
is never expired under it (if one were, its late reconcile still replaces the
estimate: nothing is counted twice either way). A store that cannot be reached
is logged and tried again on the next round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from gateway.state.budget.ledger import TokenLedger

log = logging.getLogger(__name__)

LONGEST_SWEEP_INTERVAL_S = 60.0


def sweep_interval(expiry_s: float) -> float:
    """A quarter of the expiry, at most a minute: an expired reservation is closed within 1.25 x expiry_s."""
    return min(expiry_s / 4, LONGEST_SWEEP_INTERVAL_S)


class ReservationExpiry:
    def __init__(
        self,
        ledger: TokenLedger,
        *,
        expiry_s: float,
        name: str = "provider budgets",
        every_s: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._name = name  # which ledger, for the log
        self._expiry_s = expiry_s
        self._every_s = sweep_interval(expiry_s) if every_s is None else every_s
        self._wall = wall
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._sweep_forever(), name=f"reservation-expiry ({self._name})")

    async def sweep(self) -> int:
        """Settle the reservations that have expired now; how many."""
        before = datetime.fromtimestamp(self._wall() - self._expiry_s, UTC)
        expired = await self._ledger.settle_expired(before)
        if expired:
            log.warning(
                "token reservations expired unsettled (a call whose gateway stopped); counted at their estimate",
                extra={"ledger": self._name, "reservations": expired, "expiry_s": self._expiry_s},
            )
        return expired

    async def aclose(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # noqa: BLE001 - a store outage delays the sweep, never ends it
                log.warning("reservation expiry sweep failed", extra={"ledger": self._name, "error": repr(exc)})
            await asyncio.sleep(self._every_s)
