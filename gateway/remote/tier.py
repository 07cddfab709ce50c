"""The remote tier: one escalated call through the provider chain.

For each provider in the order the policy computed (reordered by observed
latency when urgent), the tier skips it when its circuit is open, its
requests-per-minute window is full or its daily token budget cannot cover the
estimate; otherwise it reserves the estimate, calls, and reconciles the
reservation to the usage the provider reports. Retryable failures are retried
on the same provider (jittered backoff, Retry-After honoured) before falling
back to the next one. Nothing runs past the deadline. Every try and skip is
recorded as an Attempt.

A call cancelled by its caller (gone, or a hedged request whose local answer won)
settles what it holds: a try already sent to the provider is reconciled at its
full estimate (the provider may have run, and bill for, the whole reply: the
conservative choice under a free-tier budget), while a reservation the request
never left with is released, and a breaker permit is handed back. Each try's
Attempt says what it was charged (`tokens`), so the caller's own quota can be
charged the same (gateway/routing/access.py).

Shared state that goes away mid-call (Redis stopped, a disk full) never turns a
provider's answer into an error and never strands what was reserved before the
outage: a reservation whose rate-limit check fails is released, a breaker
permit whose reservation fails is handed back, and a settlement that cannot be
written is logged (the reservation then expires at its estimate).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, TypeVar

from gateway.core import structured
from gateway.core import trace as tracing
from gateway.core.clock import SYSTEM_CLOCK, Clock
from gateway.core.contracts import Attempt, BackendCall, Completion, Delta, ModelEntry, StreamEvent, Tier
from gateway.core.errors import BackendError, GatewayError
from gateway.remote import compaction, continuation
from gateway.remote.estimate import CharEstimator
from gateway.remote.latency import LatencyTracker
from gateway.remote.providers.errors import ProviderError, map_error
from gateway.remote.types import (
    DisabledProvider,
    ProviderSlot,
    ProviderUsageRow,
    RemoteDeadlineExceeded,
    RemoteExhausted,
    RemoteResult,
    RemoteSettings,
    RemoteUnavailable,
)
from gateway.state.breaker.machine import BreakerState, Permit
from gateway.state.breaker.memory import MemoryBreakerStore
from gateway.state.breaker.store import ProviderBreakers
from gateway.state.budget.ledger import Reservation, TokenLedger, next_reset, utc_day
from gateway.state.ratelimit.memory import MemoryRateLimits
from gateway.state.ratelimit.store import ProviderRateLimits

log = logging.getLogger(__name__)
T = TypeVar("T")
StreamStart = tuple[StreamEvent, AsyncIterator[StreamEvent]]


@dataclass
class _Trace:
    """What happened to one call, provider by provider (local to the call).

    Each try and skip is also an event on `span`: the remote chain's span, or the span of
    the provider being tried.
    """

    span: tracing.Span = tracing.NO_SPAN
    attempts: list[Attempt] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # errors, open circuits, missing keys
    spent: list[str] = field(default_factory=list)  # budgets that cannot cover the estimate
    limited: list[str] = field(default_factory=list)  # requests-per-minute windows that are full

    def add(
        self, provider: str, model: str, outcome: str, latency_ms: float, error: str = "", *, tokens: int = 0
    ) -> None:
        """`tokens`: what the try was charged against the provider's budget (0 when nothing was billed)."""
        self.attempts.append(Attempt(provider, model, outcome, round(latency_ms, 3), error, tokens))
        event = "provider.skipped" if outcome == "skipped" else "provider.attempt"
        attributes: dict[str, tracing.AttributeValue] = {
            "gateway.provider": provider,
            "gateway.outcome": outcome,
            "gateway.latency_ms": round(latency_ms, 3),
        }
        if error:
            attributes["gateway.error"] = error
        self.span.add_event(event, attributes)


@dataclass(frozen=True, slots=True)
class _Ticket:
    """One try in flight: its reserved tokens, its breaker permit, when it started."""

    reservation: Reservation
    permit: Permit
    started: float


@dataclass(frozen=True, slots=True)
class _Won(Generic[T]):
    value: T
    ticket: _Ticket


class _DeadlineHit(Exception):
    pass


class _Broken(Exception):
    """A provider's stream broke after it sent text; the next provider may continue the answer."""


@dataclass
class _Sent:
    """The text one streamed call has sent to the client so far, across providers (local to the call)."""

    pieces: list[str] = field(default_factory=list)
    before: int = 0  # how many pieces earlier, broken providers sent (before the one streaming now)
    broke: str | None = None  # why the last provider broke off, once one has
    prefill: bool = False  # whether the provider streaming now continues in place (Anthropic)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def call_for(self, slot: ProviderSlot, call: BackendCall) -> BackendCall:
        """The call itself, or once text went out, the call that asks `slot` to continue it."""
        self.before = len(self.pieces)
        self.prefill = bool(getattr(slot.backend, "prefill", False))
        if not self.pieces:
            return call
        return continuation.continuation_call(call, self.text, prefill=self.prefill, pieces_sent=len(self.pieces))

    def seam(self) -> continuation.Seam:
        return continuation.Seam.after(self.text, prefill=self.prefill)

    def add(self, seam: continuation.Seam, event: Delta) -> Delta | None:
        """The piece to send (None when the seam swallowed it all); its text is kept."""
        text = seam.piece(event.text)
        if not text and event.text:
            return None
        if text != event.text:
            event = replace(event, text=text)
        self.pieces.append(text)
        return event

    def flush(self, seam: continuation.Seam) -> Delta | None:
        """The text the seam still holds back, as a last piece (None when there is none)."""
        text = seam.flush()
        if not text:
            return None
        self.pieces.append(text)
        return Delta(text)

    def joined(self, completion: Completion) -> Completion:
        """The last provider's completion, as the whole answer when earlier providers sent part of it; their
        pieces count as completion tokens (at least one each: what the usage record can know of them)."""
        if not self.before:
            return completion
        usage = completion.usage
        usage = replace(usage, completion_tokens=usage.completion_tokens + self.before)
        return replace(completion, text=self.text, usage=usage)


class RemoteTier:
    def __init__(
        self,
        slots: Sequence[ProviderSlot],
        ledger: TokenLedger,
        *,
        disabled: Sequence[DisabledProvider] = (),
        estimator: Callable[[BackendCall], int] | None = None,
        settings: RemoteSettings | None = None,
        breakers: ProviderBreakers | None = None,
        rate_limits: ProviderRateLimits | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tracer: tracing.Tracer = tracing.NO_TRACER,
    ) -> None:
        self._slots = {slot.name: slot for slot in slots}
        self._disabled = {d.name: d for d in disabled}
        self._ledger = ledger
        settings = settings or RemoteSettings()
        self._estimate = estimator or CharEstimator()
        self._settings = settings
        self._clock = clock
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._breakers = breakers or MemoryBreakerStore(settings.breaker, wall=clock.monotonic)
        self._rate_limits = rate_limits or MemoryRateLimits(clock.monotonic)
        self._latency = LatencyTracker(settings.latency_alpha)
        self._tracer = tracer

    # -- what the router and servicer ask --------------------------------------------------------

    def providers(self) -> tuple[str, ...]:
        """Enabled providers, in the order they were configured."""
        return tuple(self._slots)

    def models(self) -> list[ModelEntry]:
        entries = []
        for slot in self._slots.values():
            metrics = {
                "daily_token_budget": float(slot.daily_token_budget),
                "requests_per_minute": float(slot.requests_per_minute),
                "price_in_per_mtok": slot.price_in_per_mtok,
                "price_out_per_mtok": slot.price_out_per_mtok,
            }
            entries.append(ModelEntry(f"{slot.name}/{slot.backend.model}", Tier.REMOTE, slot.name, metrics=metrics))
        return entries

    async def usage_today(self) -> list[ProviderUsageRow]:
        now = self._clock.wall()
        used = await self._ledger.usage(utc_day(now))
        budgets = [(s.name, s.daily_token_budget) for s in self._slots.values()]
        budgets += [(d.name, d.daily_token_budget) for d in self._disabled.values()]
        rows = []
        for name, budget in budgets:
            spend = used.get(name)
            tokens, requests = (spend.tokens_used, spend.requests) if spend else (0, 0)
            remaining = max(budget - tokens, 0) if budget else None
            rows.append(ProviderUsageRow(name, tokens, budget, requests, remaining, next_reset(now)))
        return rows

    async def aclose(self) -> None:
        """Close the providers' clients. The ledger belongs to whoever built it."""
        for slot in self._slots.values():
            try:
                await slot.backend.aclose()
            except Exception as exc:  # noqa: BLE001 - closing one client must not stop closing the others
                log.warning("closing provider failed", extra={"provider": slot.name, "error": repr(exc)})

    # -- the chain ---------------------------------------------------------------------------------

    async def complete(
        self,
        call: BackendCall,
        *,
        order: tuple[str, ...],
        deadline: float | None,
        urgent: bool = False,
        attempts: list[Attempt] | None = None,
    ) -> RemoteResult:
        """`attempts`: a list each try and skip is appended to as it happens, so a caller that cancels
        the call (a hedge that lost) still has them; the result and errors carry them either way."""
        deadline = call.deadline if deadline is None else deadline
        call = _compacted(call)
        estimate = self._estimate(call)
        day = utc_day(self._clock.wall())
        with self._tracer.span("gateway.remote", _chain_attributes(order, urgent, estimate)) as chain:
            trace = _Trace(chain, [] if attempts is None else attempts)
            for slot in await self._candidates(order, urgent, estimate, day, trace):
                with self._tracer.span("gateway.provider", _provider_attributes(slot, call)) as span:
                    trace.span = span
                    won = await self._attempt(slot, call, estimate, day, deadline, trace, _generate)
                    if won is not None:
                        # Settled even when the caller cancels now: the provider has answered and billed.
                        await asyncio.shield(self._succeeded(slot, won.ticket, won.value, estimate, trace))
                        _answered(span, won.value)
                        return RemoteResult(won.value, tuple(trace.attempts))
                    _gave_up(span, trace)
                trace.span = chain
            raise await self._no_answer(trace, estimate, day)

    async def stream(
        self, call: BackendCall, *, order: tuple[str, ...], deadline: float | None, urgent: bool = False
    ) -> AsyncIterator[Delta | RemoteResult]:
        """The same chain, streaming: Delta pieces, then one RemoteResult.

        Before the first piece is sent a failing provider falls back as `complete` does. After it, a
        provider whose stream breaks (reset, malformed event, or no event within `stream_chunk_timeout_s`)
        is continued by the next one (gateway/remote/continuation.py): the client sees one stream, the
        RemoteResult names every try, and each try is charged to its own budget. With no provider left,
        or when the answer cannot be continued (structured, tools, `continue_streams` off), the stream
        ends with RemoteUnavailable.
        """
        deadline = call.deadline if deadline is None else deadline
        call = _compacted(call)
        estimate = self._estimate(call)
        day = utc_day(self._clock.wall())
        with self._tracer.span("gateway.remote", _chain_attributes(order, urgent, estimate)) as chain:
            trace = _Trace(chain)
            sent = _Sent()
            for slot in await self._candidates(order, urgent, estimate, day, trace):
                attempt_call = sent.call_for(slot, call)
                with self._tracer.span("gateway.provider", _provider_attributes(slot, attempt_call)) as span:
                    trace.span = span
                    won = await self._attempt(slot, attempt_call, estimate, day, deadline, trace, _open_stream)
                    if won is None:
                        _gave_up(span, trace)
                        trace.span = chain
                        continue
                    pieces = self._stream_from(slot, attempt_call, won, deadline, estimate, trace, sent)
                    try:
                        async for piece in pieces:
                            yield piece
                    except _Broken:
                        trace.span = chain
                        continue  # the next provider continues the answer from the text sent so far
                    finally:
                        await pieces.aclose()  # a consumer that leaves settles the try now, not at collection
                    return
            if sent.broke is not None:
                raise RemoteUnavailable(
                    f"{sent.broke}; no other provider could continue the answer", tuple(trace.attempts)
                )
            raise await self._no_answer(trace, estimate, day)

    async def _stream_from(
        self,
        slot: ProviderSlot,
        call: BackendCall,
        won: _Won[StreamStart],
        deadline: float | None,
        estimate: int,
        trace: _Trace,
        sent: _Sent,
    ) -> AsyncGenerator[Delta | RemoteResult, None]:
        """The pieces of the provider that answered, then its RemoteResult (joined onto the text an earlier,
        broken provider sent); _Broken when it fails after sending text and the answer can be continued."""
        event, events = won.value
        model = call.model or slot.backend.model
        chunk_timeout = self._settings.stream_chunk_timeout_s
        seam = sent.seam()
        try:
            with tracing.waiting():  # the provider, and the consumer between pieces
                while not isinstance(event, Completion):
                    piece = sent.add(seam, event)
                    if piece is not None:
                        yield piece
                    event = await _next_event(events, deadline, self._clock, chunk_timeout)
                rest = sent.flush(seam)
                if rest is not None:
                    yield rest
        except _DeadlineHit:
            await self._failed(slot, won.ticket, _abandoned(), model, trace, outcome="timeout")
            raise RemoteDeadlineExceeded(
                f"deadline reached while {slot.name} was streaming; raise the deadline", tuple(trace.attempts)
            ) from None
        except Exception as exc:
            error = _as_provider_error(slot.name, exc)
            await self._failed(slot, won.ticket, error, model, trace)
            broke = f"{slot.name} failed mid-stream after sending text: {error.message}"
            if sent.text and self._settings.continue_streams and continuation.can_continue(call):
                sent.broke = broke
                raise _Broken from exc
            raise RemoteUnavailable(broke, tuple(trace.attempts)) from exc
        except BaseException:  # the consumer went away (cancelled, or closed the stream)
            await asyncio.shield(self._failed(slot, won.ticket, _abandoned(), model, trace, outcome="cancelled"))
            raise
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
        await self._succeeded(slot, won.ticket, event, estimate, trace)
        _answered(trace.span, event)
        yield RemoteResult(sent.joined(event), tuple(trace.attempts))

    # -- steps --------------------------------------------------------------------------------------

    async def _candidates(
        self, order: tuple[str, ...], urgent: bool, estimate: int, day: str, trace: _Trace
    ) -> list[ProviderSlot]:
        names = list(dict.fromkeys(order))
        for name in names:
            if name not in self._slots:
                reason = self._disabled[name].reason if name in self._disabled else "not configured"
                trace.add(name, "", "skipped", 0.0, reason)
                trace.failed.append(f"{name}: {reason}")
        slots = [self._slots[name] for name in names if name in self._slots]
        if urgent and len(slots) > 1:
            used = await self._ledger.usage(day)
            states = {slot.name: await self._breakers.state(slot.name) for slot in slots}

            def rank(slot: ProviderSlot) -> tuple[bool, float]:
                spend = used.get(slot.name)
                budget_ok = not slot.daily_token_budget or (
                    (spend.tokens_used if spend else 0) + estimate <= slot.daily_token_budget
                )
                healthy = states[slot.name] is BreakerState.CLOSED
                latency = self._latency.get(slot.name)
                return (not (healthy and budget_ok), math.inf if latency is None else latency)

            slots.sort(key=rank)  # stable: ties keep the policy's order
        return slots

    async def _attempt(
        self,
        slot: ProviderSlot,
        call: BackendCall,
        estimate: int,
        day: str,
        deadline: float | None,
        trace: _Trace,
        start: Callable[[ProviderSlot, BackendCall], Awaitable[T]],
    ) -> _Won[T] | None:
        """Try one provider, with retries; None when it was skipped or gave up (recorded in `trace`)."""
        name, model = slot.name, call.model or slot.backend.model
        breakers = self._breakers
        permit = await breakers.allow(name)
        if permit is None:
            reason = await breakers.describe(name)
            trace.add(name, model, "skipped", 0.0, reason)
            trace.failed.append(f"{name}: {reason}")
            return None
        for retry_index in range(slot.max_retries + 1):
            remaining = self._remaining(deadline)
            if remaining is not None and remaining <= 0:
                await breakers.release(name, permit)
                raise RemoteDeadlineExceeded(self._deadline_message(name), tuple(trace.attempts))
            reservation = await self._reserve_holding(permit, slot, model, estimate, day, trace)
            if reservation is None:
                return None
            ticket = _Ticket(reservation, permit, self._clock.monotonic())
            try:
                with tracing.waiting():
                    value = await _within(start(slot, call), remaining)
            except _DeadlineHit:
                await self._failed(slot, ticket, _abandoned(), model, trace, outcome="timeout")
                raise RemoteDeadlineExceeded(self._deadline_message(name), tuple(trace.attempts)) from None
            except asyncio.CancelledError:
                await asyncio.shield(self._failed(slot, ticket, _abandoned(), model, trace, outcome="cancelled"))
                raise
            except Exception as exc:  # noqa: BLE001 - any provider failure is recorded, then retried or skipped
                error = _as_provider_error(name, exc)
                await self._failed(slot, ticket, error, model, trace)
                delay = self._settings.retry.plan(
                    retry_index,
                    retries_left=slot.max_retries - retry_index,
                    retryable=error.retryable,
                    retry_after_s=error.retry_after_s,
                    remaining_s=self._remaining(deadline),
                    rng=self._rng,
                )
                if error.retry_after_s is not None and error.retry_after_s > self._settings.retry.max_retry_after_s:
                    await breakers.block_for(name, error.retry_after_s)
                next_permit = await breakers.allow(name) if delay is not None else None
                if delay is None or next_permit is None:
                    return None  # not retryable, out of retries or time, or the circuit opened: next provider
                permit = next_permit
                trace.span.add_event("provider.retry", {"gateway.retry": retry_index + 1, "gateway.delay_s": delay})
                await self._back_off(name, permit, delay)
                continue
            return _Won(value, ticket)
        return None

    async def _reserve_holding(
        self, permit: Permit, slot: ProviderSlot, model: str, estimate: int, day: str, trace: _Trace
    ) -> Reservation | None:
        """Reserve for a try that holds `permit`; the permit goes back when nothing was reserved."""
        try:
            reservation = await self._reserve(slot, model, estimate, day, trace)
        except BaseException:  # shared state unreachable, or the caller left
            await asyncio.shield(self._release_permit(slot.name, permit))
            raise
        if reservation is None:
            await self._breakers.release(slot.name, permit)
        return reservation

    async def _release_permit(self, name: str, permit: Permit) -> None:
        try:
            await self._breakers.release(name, permit)
        except Exception as exc:  # noqa: BLE001 - the breaker store is unreachable: its permit times out there
            _unsettled(name, "breaker state", exc)

    async def _back_off(self, name: str, permit: Permit, delay: float) -> None:
        """Wait before a retry holding the breaker permit for it; a caller that leaves hands the permit back."""
        try:
            with tracing.waiting():  # the provider asked for it (Retry-After) or is failing: its time, not ours
                await self._sleep(delay)
        except asyncio.CancelledError:
            await asyncio.shield(self._breakers.release(name, permit))
            raise

    async def _reserve(
        self, slot: ProviderSlot, model: str, estimate: int, day: str, trace: _Trace
    ) -> Reservation | None:
        """Reserve the estimate, then count the request against the per-minute window (or give it back).

        A caller that cancels meanwhile (a hedge that lost) leaves no reservation open: one the ledger
        made as the cancel arrived is released at once, not held until it expires.
        """
        name = slot.name
        budget = slot.daily_token_budget or None
        reserving = asyncio.ensure_future(self._ledger.reserve(name, estimate, day=day, limit=budget))
        try:
            reservation = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            await asyncio.shield(_release_when_reserved(self._ledger, reserving))
            raise
        if reservation is None:
            spend = (await self._ledger.usage(day)).get(name)
            used = spend.tokens_used if spend else 0
            reason = f"daily token budget spent: {used} of {budget} used, this request needs ~{estimate}"
            trace.add(name, model, "skipped", 0.0, reason)
            trace.spent.append(f"{name} ({used}/{budget} tokens)")
            return None
        per_minute = slot.requests_per_minute
        try:
            acquired = await self._rate_limits.try_acquire(name, per_minute)
        except BaseException:  # the caller left, or the rate-limit state is unreachable: nothing was sent
            await asyncio.shield(self._release_reservation(name, reservation))
            raise
        if not acquired:
            await self._ledger.release(reservation)
            free_in = await self._rate_limits.free_in_s(name, per_minute)
            reason = f"rate limited: {per_minute} requests/min (room again in {free_in:.0f} s)"
            trace.add(name, model, "skipped", 0.0, reason)
            trace.limited.append(f"{name} {reason}")
            return None
        return reservation

    async def _release_reservation(self, name: str, reservation: Reservation) -> None:
        try:
            await self._ledger.release(reservation)
        except Exception as exc:  # noqa: BLE001 - the ledger is unreachable too: the reservation expires there
            _unsettled(name, "token ledger", exc)

    async def _succeeded(
        self, slot: ProviderSlot, ticket: _Ticket, completion: Completion, estimate: int, trace: _Trace
    ) -> None:
        latency_ms = (self._clock.monotonic() - ticket.started) * 1000
        reported = slot.charge(completion.usage)
        charged = reported if completion.usage.total > 0 else estimate
        try:
            await self._ledger.reconcile(ticket.reservation, charged)
            await self._breakers.record_success(slot.name)
        except Exception as exc:  # noqa: BLE001 - the answer is paid for: keep it; the estimate expires later
            log.warning(
                "provider answered but shared state is unreachable", extra={"provider": slot.name, "error": repr(exc)}
            )
        self._latency.observe(slot.name, latency_ms)
        trace.add(slot.name, completion.model, "ok", latency_ms, tokens=charged)

    async def _failed(
        self,
        slot: ProviderSlot,
        ticket: _Ticket,
        error: ProviderError,
        model: str,
        trace: _Trace,
        outcome: str = "error",
    ) -> None:
        """Settle a try that did not answer: keep the estimate if the model may have run, else give it back.

        Shared state that cannot be reached meanwhile is logged, never raised in place of the provider's
        error: a reservation that could not be settled expires at its estimate (gateway/state/budget/expiry.py).
        """
        latency_ms = (self._clock.monotonic() - ticket.started) * 1000
        charged = ticket.reservation.tokens if error.maybe_billed else 0
        trace.add(slot.name, model, outcome, latency_ms, error.message, tokens=charged)
        if outcome == "error":
            trace.failed.append(error.message)
            log.info(
                "provider attempt failed",
                extra={"provider": slot.name, "model": model, "error": error.message, "retryable": error.retryable},
            )
        try:
            if charged:
                await self._ledger.reconcile(ticket.reservation, charged)
            else:
                await self._ledger.release(ticket.reservation)
        except Exception as exc:  # noqa: BLE001 - an outage must not hide the provider's error
            _unsettled(slot.name, "token ledger", exc)
        try:
            if outcome != "error":
                await self._breakers.release(slot.name, ticket.permit)  # our deadline or caller, not its health
            elif error.counts_against_health:
                await self._breakers.record_failure(slot.name)
            else:
                await self._breakers.record_success(slot.name)  # it answered; the request was at fault
        except Exception as exc:  # noqa: BLE001 - as above
            _unsettled(slot.name, "breaker state", exc)

    async def _no_answer(self, trace: _Trace, estimate: int, day: str) -> GatewayError:
        attempts = tuple(trace.attempts)
        if trace.failed or not (trace.spent or trace.limited):
            notes = dict.fromkeys(trace.failed + [f"{s} out of budget" for s in trace.spent] + trace.limited)
            detail = "; ".join(notes) if notes else "no remote provider is enabled"
            return RemoteUnavailable(f"no remote provider could answer: {detail}", attempts)
        resets_at = next_reset(self._clock.wall())
        parts = []
        if trace.spent:
            parts.append(f"daily token budgets spent: {', '.join(trace.spent)}; this request needs ~{estimate} tokens")
        if trace.limited:
            parts.append("; ".join(trace.limited))
        message = (
            f"remote providers exhausted: {'; '.join(parts)}. "
            f"Budgets reset at {resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (UTC midnight)"
        )
        return RemoteExhausted(message, attempts, resets_at)

    def _remaining(self, deadline: float | None) -> float | None:
        return None if deadline is None else deadline - self._clock.monotonic()

    @staticmethod
    def _deadline_message(provider: str) -> str:
        return f"deadline reached before {provider} answered; raise the request's deadline"


# -- helpers ---------------------------------------------------------------------------------------


def _compacted(call: BackendCall) -> BackendCall:
    """The call as paid providers get it: its new turn compacted when its task asks (gateway/remote/compaction.py)."""
    return compaction.compact_call(call).call if call.compact_prompt else call


def _chain_attributes(order: tuple[str, ...], urgent: bool, estimate: int) -> tracing.Attributes:
    return {"gateway.remote.order": ",".join(order), "gateway.urgent": urgent, "gateway.estimate_tokens": estimate}


def _provider_attributes(slot: ProviderSlot, call: BackendCall) -> tracing.Attributes:
    return {"gateway.provider": slot.name, "gateway.model": call.model or slot.backend.model}


def _gave_up(span: tracing.Span, trace: _Trace) -> None:
    span.set_attribute("gateway.outcome", trace.attempts[-1].outcome if trace.attempts else "skipped")


def _answered(span: tracing.Span, completion: Completion) -> None:
    span.set_attribute("gateway.outcome", "ok")
    span.set_attribute("gateway.model", completion.model)
    span.set_attribute("gen_ai.usage.input_tokens", completion.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", completion.usage.completion_tokens)


async def _generate(slot: ProviderSlot, call: BackendCall) -> Completion:
    """The provider's answer; a structured one that does not validate is a failed try (the next provider)."""
    completion = await slot.backend.generate(call)
    if call.response_format is not None and not completion.tool_calls:  # a tool call is not the answer yet
        invalid = structured.problem(completion.text, call.response_format)
        if invalid is not None:
            # 422: the answer, not the provider's health, is at fault (the breaker does not count it)
            raise ProviderError(f"{slot.name}: {invalid}", retryable=False, status_code=422, maybe_billed=True)
    return completion


async def _open_stream(slot: ProviderSlot, call: BackendCall) -> StreamStart:
    """Open the provider's stream and wait for its first event (before it, falling back is still possible)."""
    events = aiter(slot.backend.stream(call))
    try:
        first = await anext(events)
    except StopAsyncIteration:
        raise ProviderError(f"{slot.name}: stream ended without an answer", retryable=True, maybe_billed=True) from None
    return first, events


async def _within(awaitable: Awaitable[T], remaining: float | None) -> T:
    """Await within the deadline; _DeadlineHit (not TimeoutError, which providers may raise) when it passes."""
    scope = asyncio.timeout(remaining)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise _DeadlineHit from None
        raise


async def _next_event(
    events: AsyncIterator[StreamEvent], deadline: float | None, clock: Clock, chunk_timeout: float | None = None
) -> StreamEvent:
    """The stream's next event, within the deadline; a provider silent for `chunk_timeout` s (when that comes
    before the deadline) has stalled: a retryable ProviderError."""
    remaining = None if deadline is None else deadline - clock.monotonic()
    if remaining is not None and remaining <= 0:
        raise _DeadlineHit
    stalls = chunk_timeout is not None and (remaining is None or chunk_timeout < remaining)
    try:
        return await _within(anext(events), chunk_timeout if stalls else remaining)
    except _DeadlineHit:
        if stalls:
            message = f"stream stalled: no event for {chunk_timeout:g} s"
            raise ProviderError(message, retryable=True, maybe_billed=True) from None
        raise
    except StopAsyncIteration:
        raise ProviderError("stream ended without a final completion", retryable=False, maybe_billed=True) from None


def _as_provider_error(provider: str, exc: Exception) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, BackendError):
        return ProviderError(exc.message, retryable=exc.retryable, retry_after_s=exc.retry_after_s, maybe_billed=True)
    return map_error(provider, exc)


async def _release_when_reserved(ledger: TokenLedger, reserving: asyncio.Future[Reservation | None]) -> None:
    """Give back what a reserve call whose caller left has reserved (nothing when it failed or found no room)."""
    try:
        reservation = await reserving
    except Exception:  # noqa: BLE001 - the reserve failed: nothing was reserved
        return
    if reservation is not None:
        await ledger.release(reservation)


def _unsettled(provider: str, store: str, exc: Exception) -> None:
    log.warning(
        f"{store} unreachable while settling a try; an open reservation is settled at its estimate when it expires",
        extra={"provider": provider, "error": repr(exc)},
    )


def _abandoned() -> ProviderError:
    return ProviderError("abandoned: the deadline passed or the caller went away", retryable=False, maybe_billed=True)
