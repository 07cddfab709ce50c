"""Per-provider daily token budgets: the ledger interface and the UTC day arithmetic.

A request reserves its estimated tokens before the call; the reservation is
reconciled to the usage the provider reports, or released when the provider
did not serve (an HTTP error before any generation). A reservation that can
never be settled (the process died mid-call) keeps counting its estimate: the
ledger errs on the side of spending less than the free tier.

Reservations expire. One still open after `[budget] reservation_expiry_s` (set
longer than any provider call can last) belongs to a call nobody will settle:
`settle_expired` closes it at its estimate, which is then final. Expiry never
gives tokens back (the provider may have served the call) and never counts a
request twice; it only ends the reservation's open state, so no reservation
stays in flight for ever (gateway/state/budget/expiry.py runs it).

Implementations: gateway/state/budget/sqlite.py (default, survives restarts),
gateway/state/budget/memory.py (tests, single process). A Redis ledger fills the
same Protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens set aside for one call to one provider on one UTC day."""

    id: int
    provider: str
    day: str  # YYYY-MM-DD, UTC
    tokens: int


@dataclass(frozen=True, slots=True)
class LedgerUsage:
    """One provider's spend on one day: reserved-but-unsettled plus reconciled tokens."""

    provider: str
    tokens_used: int
    requests: int


class TokenLedger(Protocol):
    async def reserve(self, provider: str, tokens: int, *, day: str, limit: int | None) -> Reservation | None:
        """Atomically: if used + tokens <= limit (None: no limit), record and return a reservation, else None."""
        ...

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        """Replace the estimate with the tokens the provider reported."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """The call never reached the model: give the tokens back and do not count the request."""
        ...

    async def usage(self, day: str) -> dict[str, LedgerUsage]:
        """Per provider spend on `day`; providers with no spend are absent."""
        ...

    async def settle_expired(self, before: datetime) -> int:
        """Settle at its estimate every reservation made before `before` and still open; how many there were."""
        ...

    async def aclose(self) -> None: ...


def utc_day(now: datetime) -> str:
    """The budget day a moment belongs to."""
    return now.astimezone(UTC).strftime("%Y-%m-%d")


def next_reset(now: datetime) -> datetime:
    """The UTC midnight after `now`: when every daily budget starts again."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)
