"""An in-process token ledger: exact under asyncio concurrency, lost on restart. For tests and one-off runs."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import datetime

from gateway.state.budget.ledger import LedgerUsage, Reservation


class MemoryLedger:
    def __init__(self, *, wall: Callable[[], float] = time.time) -> None:
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._wall = wall
        self._open: dict[int, Reservation] = {}
        self._unsettled: dict[int, float] = {}  # reservation id -> when it was made

    async def reserve(self, provider: str, tokens: int, *, day: str, limit: int | None) -> Reservation | None:
        async with self._lock:
            used = sum(r.tokens for r in self._open.values() if r.provider == provider and r.day == day)
            if limit is not None and used + tokens > limit:
                return None
            reservation = Reservation(next(self._ids), provider, day, tokens)
            self._open[reservation.id] = reservation
            self._unsettled[reservation.id] = self._wall()
            return reservation

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        async with self._lock:
            if reservation.id in self._open:
                self._open[reservation.id] = Reservation(
                    reservation.id, reservation.provider, reservation.day, actual_tokens
                )
            self._unsettled.pop(reservation.id, None)

    async def release(self, reservation: Reservation) -> None:
        async with self._lock:
            self._open.pop(reservation.id, None)
            self._unsettled.pop(reservation.id, None)

    async def usage(self, day: str) -> dict[str, LedgerUsage]:
        async with self._lock:
            totals: dict[str, LedgerUsage] = {}
            for r in self._open.values():
                if r.day == day:
                    prev = totals.get(r.provider, LedgerUsage(r.provider, 0, 0))
                    totals[r.provider] = LedgerUsage(r.provider, prev.tokens_used + r.tokens, prev.requests + 1)
            return totals

    async def settle_expired(self, before: datetime) -> int:
        async with self._lock:
            cutoff = before.timestamp()
            expired = [rid for rid, made in self._unsettled.items() if made < cutoff]
            for rid in expired:
                del self._unsettled[rid]
            return len(expired)

    async def aclose(self) -> None:
        return None
