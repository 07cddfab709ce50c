"""Authorization and per-key quotas: what an authenticated caller may ask, and how much.

The doors (gRPC servicer, HTTP middleware) only authenticate: they put the
caller's name on `Request.client`. This decorator looks up that name's key and
applies its policy, so both doors behave the same:

- tasks: a key with a task list may ask only those tasks (PERMISSION_DENIED);
- local_only: the request becomes LOCAL_ONLY whatever it says, and a
  `provider/model` pin is PERMISSION_DENIED, so the key never causes a remote call;
- rpm: requests per sliding minute, in the shared rate-limit state under
  `key:<name>` (RESOURCE_EXHAUSTED with the time the window has room again);
- daily_tokens: prompt + completion tokens per UTC day in a ledger of its own
  (RESOURCE_EXHAUSTED with the next UTC midnight). The request's estimate is
  reserved before it runs, then charged as the providers' budgets are: what
  each try used or was charged (`Attempt.tokens`: the local attempt's tokens,
  each provider try's reported usage, or its estimate when it may have been
  billed without an answer: a timeout, a cancelled hedge, a dropped stream), and
  at least the answer's own usage (cache hits count 0). A request that ends with
  no answer and no try that may have been billed gives its reservation back; one
  that ends without a word of how (the caller disconnected mid-stream, or
  cancelled) is charged its estimate, since a tier may have run it in full.

A quota store that cannot be reached when settling is logged, never turned into
an error: the answer is already made and paid for, and the reservation is
settled at its estimate when it expires (gateway/state/budget/expiry.py).

With no keys at all, requests pass unchanged (authentication off).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gateway.core.contracts import Attempt, BackendCall, Delta, ModelEntry, Privacy, Request, Result, Tier
from gateway.core.errors import GatewayError, PermissionDenied, ResourceExhausted, Unauthenticated
from gateway.remote.estimate import CharEstimator
from gateway.routing.answerer import Answerer
from gateway.state.budget.ledger import Reservation, TokenLedger, next_reset, utc_day
from gateway.state.keys.store import ApiKey
from gateway.state.ratelimit.store import ProviderRateLimits

log = logging.getLogger(__name__)

RATE_PREFIX = "key:"


class KeyPolicies(Protocol):
    """Where a caller's key is looked up (gateway/state/keys/table.py); lookups never block."""

    @property
    def enabled(self) -> bool: ...

    def policy(self, name: str) -> ApiKey | None: ...


class AccessRouter:
    def __init__(
        self,
        inner: Answerer,
        policies: KeyPolicies,
        quotas: TokenLedger,
        windows: ProviderRateLimits,
        *,
        estimate: CharEstimator,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._inner = inner
        self._policies = policies
        self._quotas = quotas
        self._windows = windows
        self._estimate = estimate
        self._wall = wall

    async def generate(self, request: Request) -> Result:
        request, reservation = await self._admit(request)
        if reservation is None:
            return await self._inner.generate(request)
        try:
            result = await self._inner.generate(request)
        except GatewayError as exc:
            await self._settle(reservation, _charged(getattr(exc, "attempts", ())))
            raise
        except BaseException:  # cancelled (the caller left) or a fault: what ran is unknown
            await asyncio.shield(self._settle(reservation, reservation.tokens))
            raise
        await self._settle(reservation, _answer_tokens(result), answered=True)
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        request, reservation = await self._admit(request)
        if reservation is None:
            async for event in self._inner.stream(request):
                yield event
            return
        settled = False
        events = self._inner.stream(request)
        try:
            async for event in events:
                if isinstance(event, Result):
                    settled = True
                    await self._settle(reservation, _answer_tokens(event), answered=True)
                yield event
        except GatewayError as exc:
            if not settled:
                settled = True
                await self._settle(reservation, _charged(getattr(exc, "attempts", ())))
            raise
        finally:
            await events.aclose()  # type: ignore[attr-defined]  # the tiers settle their own tries first
            if not settled:  # the caller left mid-stream: what ran is unknown
                await asyncio.shield(self._settle(reservation, reservation.tokens))

    def models(self) -> list[ModelEntry]:
        return self._inner.models()

    async def _admit(self, request: Request) -> tuple[Request, Reservation | None]:
        """The request as the key allows it, and the tokens reserved for it; raises when it may not run."""
        if not self._policies.enabled:
            return request, None
        key = self._key(request.client)
        if key.tasks and request.task not in key.tasks:
            raise PermissionDenied(
                f"task: API key '{key.name}' may ask only the tasks {', '.join(key.tasks)}; "
                f"this request asked {repr(request.task) if request.task else 'no task'}"
            )
        if key.local_only:
            if "/" in request.model:
                raise PermissionDenied(
                    f"model: API key '{key.name}' is local-only and '{request.model}' is a remote provider; "
                    "pin a local model or none"
                )
            request = dataclasses.replace(request, privacy=Privacy.LOCAL_ONLY)
        if key.rpm and not await self._windows.try_acquire(RATE_PREFIX + key.name, key.rpm):
            wait_s = await self._windows.free_in_s(RATE_PREFIX + key.name, key.rpm)
            resets_at = self._wall() + timedelta(seconds=wait_s)
            raise ResourceExhausted(
                f"API key '{key.name}' is over its limit of {key.rpm} requests per minute; "
                f"retry after {_iso(resets_at)}",
                resets_at=resets_at,
            )
        if not key.daily_tokens:
            return request, None
        now = self._wall()
        tokens = self._estimate(BackendCall(request.request_id, request.messages, request.max_tokens))
        reservation = await self._quotas.reserve(key.name, tokens, day=utc_day(now), limit=key.daily_tokens)
        if reservation is None:
            resets_at = next_reset(now)
            raise ResourceExhausted(
                f"API key '{key.name}' is over its daily quota of {key.daily_tokens} tokens "
                f"(this request may use up to {tokens}: prompt and max_tokens); it resets at {_iso(resets_at)}",
                resets_at=resets_at,
            )
        return request, reservation

    async def _settle(self, reservation: Reservation, tokens: int, *, answered: bool = False) -> None:
        """Charge the reservation `tokens` (give it back when nothing was charged and nothing answered)."""
        try:
            if tokens or answered:
                await self._quotas.reconcile(reservation, tokens)
            else:
                await self._quotas.release(reservation)
        except Exception as exc:  # noqa: BLE001 - an answer already made is never turned into an error
            log.warning(
                "API-key quota unreachable while settling a request; its estimate stays reserved until it expires",
                extra={"key": reservation.provider, "error": repr(exc)},
            )

    def _key(self, name: str) -> ApiKey:
        if not name:
            raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
        key = self._policies.policy(name)
        if key is None:
            raise Unauthenticated(f"'{name}' has no active API key (revoked, or never created)")
        return key


def usage_scope(policies: KeyPolicies, caller: str, asked: str) -> str:
    """Whose usage `caller` may read: an admin key (or no keys at all) anyone's, any other key only its own."""
    if not policies.enabled:
        return asked
    key = policies.policy(caller) if caller else None
    if key is None:
        raise Unauthenticated("missing API key: send 'authorization: Bearer <key>'")
    if key.admin or asked == key.name:
        return asked
    if not asked:
        return key.name
    raise PermissionDenied(f"client: API key '{key.name}' may read only its own usage; ask with client='{key.name}'")


def _charged(attempts: Iterable[Attempt]) -> int:
    """What the tries of a request used or were charged: local tokens, provider usage or billed estimates."""
    return sum(attempt.tokens for attempt in attempts)


def _answer_tokens(result: Result) -> int:
    """An answered request: every try it made, and at least the answer's own usage; a cache hit is free."""
    if result.tier is Tier.CACHE:
        return 0
    return max(_charged(result.attempts), result.usage.total)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
