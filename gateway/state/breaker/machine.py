"""The circuit-breaker state machine, as pure functions over one provider's record.

closed --N failures in window_s--> open --cooldown_s--> half-open (one probe)
half-open --probe ok--> closed;  half-open --probe fails--> open again.
A provider can also be blocked for a while on its own word (429 + Retry-After).

Every store (memory.py in one process, sqlite.py on one box, redis.py across
boxes) keeps records and runs these functions; none has a state machine of its own.
The half-open probe is a lease: if the process holding it dies, another may probe
once the lease runs out.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, replace


class BreakerState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = 5
    window_s: float = 60.0
    cooldown_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to call the provider; `probe` marks the single half-open trial."""

    probe: bool


STATE_VALUES = {BreakerState.CLOSED: 0.0, BreakerState.HALF_OPEN: 1.0, BreakerState.OPEN: 2.0}  # the gauge's values


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """One provider's shared breaker state; times are wall-clock seconds."""

    opened_at: float | None = None
    probe_until: float = 0.0  # a half-open probe is out until then
    blocked_until: float = 0.0  # the provider asked us to wait (Retry-After)
    failures: tuple[float, ...] = ()  # recent failure times while closed


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
