"""Circuit-breaker state that several gateway processes share (SQLite on one box, Redis across boxes).

Fills gateway/remote_state.py's ProviderBreakers (what RemoteTier calls) with
the same state machine as gateway/breaker.py (closed -> open after N failures
within a window -> half-open after the cooldown -> one probe), kept in a store
keyed by provider and driven by wall-clock time so processes agree. The
half-open probe is a lease: if the process holding it dies, another may probe
once the lease runs out.

Implementations: gateway/breaker_sqlite.py, gateway/breaker_redis.py, and
MemoryBreakerStore below (one process; the reference for the shared suite).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from gateway.breaker import BreakerSettings, BreakerState, Permit
from gateway.remote_state import ProviderBreakers

STATE_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """One provider's shared breaker state; times are wall-clock seconds."""

    opened_at: float | None = None
    probe_until: float = 0.0  # a half-open probe is out until then
    blocked_until: float = 0.0  # the provider asked us to wait (Retry-After)
    failures: tuple[float, ...] = ()  # recent failure times while closed


class BreakerStore(ProviderBreakers, Protocol):
    """ProviderBreakers, plus what the metrics gauge and shutdown need."""

    async def states(self) -> dict[str, BreakerState]:
        """Every provider the store has seen, for the breaker-state gauge."""
        ...

    async def aclose(self) -> None: ...


def encode_record(record: BreakerRecord) -> str:
    return json.dumps([record.opened_at, record.probe_until, record.blocked_until, list(record.failures)])


def decode_record(raw: str | bytes | None) -> BreakerRecord:
    if raw is None:
        return BreakerRecord()
    opened_at, probe_until, blocked_until, failures = json.loads(raw)
    return BreakerRecord(opened_at, float(probe_until), float(blocked_until), tuple(float(t) for t in failures))


# -- the state machine, as pure functions over a record -------------------------------------------


def evaluate(record: BreakerRecord, settings: BreakerSettings, now: float) -> BreakerState:
    if record.opened_at is None:
        return BreakerState.CLOSED
    if now - record.opened_at >= settings.cooldown_s:
        return BreakerState.HALF_OPEN
    return BreakerState.OPEN


def visible(record: BreakerRecord, settings: BreakerSettings, now: float) -> BreakerState:
    """What `state()` reports: closed but told to wait (Retry-After) shows as open."""
    state = evaluate(record, settings, now)
    if state is BreakerState.CLOSED and now < record.blocked_until:
        return BreakerState.OPEN
    return state


def allow(
    record: BreakerRecord, settings: BreakerSettings, now: float, lease_s: float
) -> tuple[BreakerRecord, Permit | None]:
    if now < record.blocked_until:
        return record, None
    state = evaluate(record, settings, now)
    if state is BreakerState.CLOSED:
        return record, Permit(probe=False)
    if state is BreakerState.OPEN or record.probe_until > now:
        return record, None
    return replace(record, probe_until=now + lease_s), Permit(probe=True)


def release(record: BreakerRecord, permit: Permit) -> BreakerRecord:
    return replace(record, probe_until=0.0) if permit.probe else record


def succeed(record: BreakerRecord) -> BreakerRecord:
    return BreakerRecord(blocked_until=record.blocked_until)


def fail(record: BreakerRecord, settings: BreakerSettings, now: float) -> BreakerRecord:
    if record.opened_at is not None:  # a failed probe (or a straggler): open for another cooldown
        return replace(record, opened_at=now, probe_until=0.0)
    failures = tuple(t for t in (*record.failures, now) if t > now - settings.window_s)
    if len(failures) >= settings.failures:
        return replace(record, opened_at=now, failures=())
    return replace(record, failures=failures)


def block(record: BreakerRecord, seconds: float, now: float) -> BreakerRecord:
    return replace(record, blocked_until=max(record.blocked_until, now + seconds))


def describe(record: BreakerRecord, settings: BreakerSettings, now: float) -> str:
    if now < record.blocked_until:
        return f"provider asked to wait {record.blocked_until - now:.1f} s more (Retry-After)"
    if record.opened_at is not None:
        left = record.opened_at + settings.cooldown_s - now
        if left > 0:
            return (
                f"circuit open after {settings.failures} failures within {settings.window_s:g} s; "
                f"next probe in {left:.1f} s"
            )
        return "circuit half-open; a probe request is in flight"
    return "circuit closed"


# -- one process ------------------------------------------------------------------------------------


class MemoryBreakerStore:
    """The shared-state interface over a dict: for a single process and for tests."""

    def __init__(
        self, settings: BreakerSettings, *, lease_s: float | None = None, wall: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._lease_s = settings.cooldown_s if lease_s is None else lease_s
        self._wall = wall
        self._records: dict[str, BreakerRecord] = {}

    async def allow(self, provider: str) -> Permit | None:
        record, permit = allow(self._get(provider), self._settings, self._wall(), self._lease_s)
        self._records[provider] = record
        return permit

    async def release(self, provider: str, permit: Permit) -> None:
        self._records[provider] = release(self._get(provider), permit)

    async def record_success(self, provider: str) -> None:
        self._records[provider] = succeed(self._get(provider))

    async def record_failure(self, provider: str) -> None:
        self._records[provider] = fail(self._get(provider), self._settings, self._wall())

    async def block_for(self, provider: str, seconds: float) -> None:
        self._records[provider] = block(self._get(provider), seconds, self._wall())

    async def state(self, provider: str) -> BreakerState:
        return visible(self._get(provider), self._settings, self._wall())

    async def describe(self, provider: str) -> str:
        return describe(self._get(provider), self._settings, self._wall())

    async def states(self) -> dict[str, BreakerState]:
        now = self._wall()
        return {name: visible(record, self._settings, now) for name, record in self._records.items()}

    async def aclose(self) -> None:
        return None

    def _get(self, provider: str) -> BreakerRecord:
        return self._records.get(provider, BreakerRecord())
