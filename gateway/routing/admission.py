"""Admission: how many requests each tier holds at once, who waits, and who is refused at once.

One gate per tier (the local backend, and each provider). Each gate's limit follows the
tier's answer times (routing/gradient.py), so a slow provider holds its own requests
without taking the local tier's room, and a tier that slows down under load gets fewer.

Classes: URGENT may use the whole limit; NORMAL leaves `urgent_share` of it free for
URGENT; BULK uses at most `bulk_share`. Waiters are served URGENT first, then NORMAL,
then BULK; a full queue sheds its newest BULK (then NORMAL) waiter for a more important
arrival. The queue is bounded, and a request whose estimated wait plus the tier's recent
answer time would pass its deadline is refused at once with the wait as its retry-after.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.core.contracts import Priority, Request
from gateway.core.errors import ResourceExhausted
from gateway.routing.gradient import GradientLimit, GradientSettings


class Klass(enum.IntEnum):
    """Admission classes, most important first (the order waiters are served in)."""

    URGENT = 0
    NORMAL = 1
    BULK = 2


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    urgent_share: float = 0.2  # of each limit kept free for URGENT
    bulk_share: float = 0.5  # the most of each limit BULK may use
    queue_factor: float = 1.0  # waiters per unit of limit
    min_queue: int = 8  # the least a queue holds, however small the limit
    key_classes: Mapping[str, Klass] = field(default_factory=dict)  # API key (caller) name -> its class


class Shed(ResourceExhausted):
    """A tier cannot take the request in time; `resets_at` is when a retry may find room."""


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    retry_after_s: float


def request_class(request: Request, key_classes: Mapping[str, Klass]) -> Klass:
    """The caller's API key class when it was given one, else the request's priority."""
    return caller_class(request.client, request.priority, key_classes)


def caller_class(client: str, priority: Priority, key_classes: Mapping[str, Klass]) -> Klass:
    if client and client in key_classes:
        return key_classes[client]
    if priority is Priority.URGENT:
        return Klass.URGENT
    if priority is Priority.BULK:
        return Klass.BULK
    return Klass.NORMAL


class Permit:
    """Room in one tier for one request; `release` it once (with how it went)."""

    __slots__ = ("_gate", "_held", "_in_flight", "_parked_at", "_parked_s", "_started")

    def __init__(self, gate: Gate, in_flight: int) -> None:
        self._gate = gate
        self._in_flight = in_flight
        self._started = gate.now()
        self._held = True
        self._parked_at: float | None = None
        self._parked_s = 0.0

    def park(self) -> None:
        """Step out while the request waits on something else (a tier): its room is lent meanwhile, and the
        time does not count as this gate's."""
        if self._held and self._parked_at is None:
            self._parked_at = self._gate.now()
            self._gate.stepped_out()

    def unpark(self) -> None:
        if self._parked_at is not None:
            self._parked_s += self._gate.now() - self._parked_at
            self._parked_at = None
            self._gate.in_flight += 1

    def release(self, *, answered: bool = True, dropped: bool = False) -> None:
        """Give the room back: `answered` times count toward the limit, `dropped` (timed out, busy) halves it."""
        if not self._held:
            return
        self.unpark()
        self._held = False
        busy_s = self._gate.now() - self._started - self._parked_s
        self._gate.released(busy_s, self._in_flight, answered=answered, dropped=dropped)


@dataclass(slots=True)
class _Waiter:
    klass: Klass
    future: asyncio.Future[Permit]


class Gate:
    """One tier's limit, its in-flight count and its bounded queue. Event loop only."""

    def __init__(
        self,
        name: str,
        limit: GradientLimit,
        settings: AdmissionSettings,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self._limit = limit
        self._settings = settings
        self.now = monotonic
        self._wall = wall
        self.in_flight = 0
        self._waiting: dict[Klass, deque[_Waiter]] = {k: deque() for k in Klass}

    @property
    def limit(self) -> int:
        return self._limit.limit

    @property
    def rtt_s(self) -> float | None:
        """The tier's recent answer time; None before its first."""
        return self._limit.rtt_s

    def cap(self, klass: Klass) -> int:
        """The most requests of `klass` (and those above it) the tier holds at once."""
        limit = self._limit.limit
        if klass is Klass.URGENT:
            return limit
        if klass is Klass.NORMAL:
            return max(1, limit - math.ceil(limit * self._settings.urgent_share))
        return max(1, math.floor(limit * self._settings.bulk_share))

    def queued(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def queue_bound(self) -> int:
        return max(self._settings.min_queue, math.ceil(self._limit.limit * self._settings.queue_factor))

    def try_enter(self, klass: Klass) -> Permit | Refusal:
        """Room now, or a refusal at once: for a tier whose caller has somewhere else to go."""
        if self._has_room(klass) and not self._ahead(klass):
            return self._admit()
        return Refusal(
            f"{self.name} concurrency limit reached ({self.in_flight} in flight, {klass.name} may hold "
            f"{self.cap(klass)} of {self._limit.limit})",
            self._wait_estimate(klass) or 0.0,
        )

    async def enter(self, klass: Klass, deadline: float | None) -> Permit:
        """Room now, or a place in the queue when the wait leaves time to answer; Shed otherwise."""
        if self._has_room(klass) and not self._ahead(klass):
            return self._admit()
        refusal = self._refuse_queueing(klass, deadline)
        if refusal is not None:
            raise self._shed(refusal)
        waiter = _Waiter(klass, asyncio.get_running_loop().create_future())
        self._waiting[klass].append(waiter)
        remaining = None if deadline is None else deadline - self.now()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), remaining)
        except TimeoutError:
            self._forget(waiter)
            wait = self._wait_estimate(klass) or 0.0
            raise self._shed(
                Refusal(f"{self.name} had no room for this request before its deadline (queued)", wait)
            ) from None
        except asyncio.CancelledError:
            self._forget(waiter)
            raise

    # -- bookkeeping -----------------------------------------------------------------

    def stepped_out(self) -> None:
        self.in_flight -= 1
        self._wake()

    def released(self, rtt_s: float, in_flight: int, *, answered: bool, dropped: bool) -> None:
        self.in_flight -= 1
        if dropped:
            self._limit.on_dropped()
        elif answered:
            self._limit.on_answer(rtt_s, in_flight)
        self._wake()

    def _admit(self) -> Permit:
        self.in_flight += 1
        return Permit(self, self.in_flight)

    def _has_room(self, klass: Klass) -> bool:
        return self.in_flight < self.cap(klass)

    def _ahead(self, klass: Klass) -> int:
        """Waiters served before a new `klass` arrival: those of its class and above."""
        return sum(len(self._waiting[k]) for k in Klass if k <= klass)

    def _wait_estimate(self, klass: Klass) -> float | None:
        """Seconds until a new `klass` arrival would start: one slot frees every rtt / cap on average."""
        rtt = self._limit.rtt_s
        if rtt is None:
            return None
        return (self._ahead(klass) + 1) * rtt / self.cap(klass)

    def _refuse_queueing(self, klass: Klass, deadline: float | None) -> Refusal | None:
        wait = self._wait_estimate(klass)
        rtt = self._limit.rtt_s
        if deadline is not None and wait is not None and rtt is not None:
            remaining = deadline - self.now()
            if wait + rtt > remaining:
                return Refusal(
                    f"{self.name} would answer in ~{(wait + rtt) * 1000:.0f} ms (queue ~{wait * 1000:.0f} ms, "
                    f"{self.in_flight} in flight, limit {self._limit.limit}), after the {remaining * 1000:.0f} ms left",
                    wait,
                )
        if self.queued() < self.queue_bound():
            return None
        victim = self._newest_below(klass)
        if victim is None:
            return Refusal(
                f"{self.name} queue is full ({self.queued()} waiting, {self.in_flight} in flight)", wait or 0.0
            )
        self._waiting[victim.klass].remove(victim)
        if not victim.future.done():
            reason = f"{self.name} queue is full: a {victim.klass.name} request gave way to a more important one"
            victim.future.set_exception(self._shed(Refusal(reason, wait or 0.0)))
        return None

    def _newest_below(self, klass: Klass) -> _Waiter | None:
        for k in sorted(Klass, reverse=True):
            if k <= klass:
                return None
            if self._waiting[k]:
                return self._waiting[k][-1]
        return None

    def _wake(self) -> None:
        for klass in Klass:
            queue = self._waiting[klass]
            while queue and self._has_room(klass):
                waiter = queue.popleft()
                if not waiter.future.done():
                    waiter.future.set_result(self._admit())

    def _forget(self, waiter: _Waiter) -> None:
        queue = self._waiting[waiter.klass]
        if waiter in queue:
            queue.remove(waiter)
        if waiter.future.done() and not waiter.future.cancelled() and waiter.future.exception() is None:
            waiter.future.result().release(answered=False)  # admitted as the caller gave up: hand it on

    def _shed(self, refusal: Refusal) -> Shed:
        retry_after = max(refusal.retry_after_s, 0.001)
        return Shed(
            f"{refusal.reason}; retry in ~{retry_after:.1f} s", resets_at=self._wall() + timedelta(seconds=retry_after)
        )


LOOP_TURNS = {Klass.URGENT: 2, Klass.NORMAL: 4, Klass.BULK: 8}  # lags of time left a call needs at the door
LOCAL_LIMIT = GradientSettings(initial=32, min_limit=2, max_limit=1000)
PROVIDER_LIMIT = GradientSettings(initial=200, min_limit=4, max_limit=4000)
DOOR_LIMIT = GradientSettings(initial=64, min_limit=4, max_limit=1024)


@dataclass(frozen=True, slots=True)
class TierLimits:
    """Where each kind of tier's limit starts and how far it may move.

    The gateway starts the local tier at its backend's own in-flight limit (app/admission.py; 32 here), a
    provider high: its requests only wait on the network, so it is bounded by how its answer times change,
    not by the gateway's cores.
    """

    local: GradientSettings = LOCAL_LIMIT
    provider: GradientSettings = PROVIDER_LIMIT
    door: GradientSettings | None = DOOR_LIMIT  # the gateway's own work; None = no such limit


class Admission:
    """Every tier's gate, made on first use; the one place the router and the doors ask for room.

    The door gate counts the requests the gateway itself is working on (parsing, routing, recording),
    not those waiting on a tier: a request steps out of it while it waits (`waiting`). Its limit follows
    the gateway's own time per request, which grows when the process is short of CPU, so a saturated
    gateway refuses new calls at once instead of letting every call queue behind the others.
    """

    def __init__(
        self,
        settings: AdmissionSettings | None = None,
        limits: TierLimits | None = None,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        loop_lag_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.settings = settings or AdmissionSettings()
        self._loop_lag_s = loop_lag_s  # how far behind the event loop runs (observe/loop_lag.py)
        self._limits = limits or TierLimits()
        self._monotonic = monotonic
        self._wall = wall
        self._gates: dict[str, Gate] = {}
        self._inside: ContextVar[Permit | None] = ContextVar(f"admission-door-{id(self)}", default=None)

    def klass(self, request: Request) -> Klass:
        return request_class(request, self.settings.key_classes)

    def enter_door(
        self, client: str, priority: Priority, *, batch: bool = False, remaining_s: float | None = None
    ) -> Permit | Refusal | None:
        """Room for the gateway's own work on a new call (None when there is no door limit). A batch is BULK
        unless its caller's key is URGENT.

        Whatever the limits, a call is refused before any work when the event loop runs so far behind that
        it could not be answered within `remaining_s`: on a congested loop a call waits about one lag at
        each of its turns (its start, its tier's answer, writing it out), so NORMAL needs LOOP_TURNS lags
        left, URGENT fewer, BULK more.
        """
        klass = caller_class(client, priority, self.settings.key_classes)
        if batch and klass is not Klass.URGENT:
            klass = Klass.BULK
        lag_s = self._loop_lag_s()
        needed_s = lag_s * LOOP_TURNS[klass]
        if remaining_s is not None and remaining_s < needed_s:
            return Refusal(
                f"gateway overloaded: its event loop runs ~{lag_s * 1000:.0f} ms behind, so a {klass.name} call "
                f"needs ~{needed_s * 1000:.0f} ms, more than the {max(remaining_s, 0.0) * 1000:.0f} ms left",
                lag_s,
            )
        if self._limits.door is None:
            return None
        return self._gate("gateway", self._limits.door).try_enter(klass)

    @contextmanager
    def inside(self, permit: Permit | None) -> Iterator[None]:
        """The call's work holds `permit` (from `enter_door`) until it ends."""
        if permit is None:
            yield
            return
        token = self._inside.set(permit)
        try:
            yield
        finally:
            permit.release()
            with suppress(ValueError):  # closed from another context (an abandoned stream): nothing to restore
                self._inside.reset(token)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """The call waits on a tier: it steps out of the door gate meanwhile."""
        permit = self._inside.get()
        if permit is None:
            yield
            return
        permit.park()
        try:
            yield
        finally:
            permit.unpark()

    def refuse(self, refusal: Refusal) -> Shed:
        """The error a door answers a refusal with: RESOURCE_EXHAUSTED, with when to retry."""
        retry_after = max(refusal.retry_after_s, 0.05)
        return Shed(
            f"{refusal.reason}; retry in ~{retry_after:.1f} s", resets_at=self._wall() + timedelta(seconds=retry_after)
        )

    def local(self) -> Gate:
        return self._gate("local tier", self._limits.local)

    def local_retry_at(self) -> datetime:
        """When a request the local tier refused may find room: after its recent answer time (1 s before any)."""
        rtt = self.local().rtt_s
        return self._wall() + timedelta(seconds=1.0 if rtt is None else max(rtt, 0.05))

    def provider(self, name: str) -> Gate:
        return self._gate(f"provider {name}", self._limits.provider)

    def gates(self) -> dict[str, Gate]:
        return dict(self._gates)

    def figures(self) -> dict[str, tuple[int, int, int]]:
        """Each gate's (limit, in flight, queued), for /metrics."""
        return {name: (gate.limit, gate.in_flight, gate.queued()) for name, gate in self._gates.items()}

    def _gate(self, name: str, settings: GradientSettings) -> Gate:
        gate = self._gates.get(name)
        if gate is None:
            gate = Gate(name, GradientLimit(settings), self.settings, monotonic=self._monotonic, wall=self._wall)
            self._gates[name] = gate
        return gate
