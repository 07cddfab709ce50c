"""Authorization and per-key quotas: what an authenticated caller may ask, and how much.

The doors (gRPC servicer, HTTP middleware) only authenticate: they put the
caller's name on `Request.client`. This decorator looks up that name's key and
applies its policy, so both doors behave the same:

- tasks: a key with a task list may ask only those tasks (PERMISSION_DENIED);
- local_only: the request becomes LOCAL_ONLY whatever it says, and a
  `provider/model` pin is PERMISSION_DENIED, so the key never causes a remote call;
- rpm: requests per sliding minute, in the shared rate-limit state under
  `key:<name>` (RESOURCE_EXHAUSTED with the time the window has room again);
- daily_tokens: prompt + completion tokens per UTC day in a ledger of its own:
  the request's estimate is reserved before it runs and reconciled to the tokens
  it used (cache hits count 0), released when it fails (RESOURCE_EXHAUSTED with
  the next UTC midnight).

With no keys at all, requests pass unchanged (authentication off).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gateway.core.contracts import BackendCall, Delta, ModelEntry, Privacy, Request, Result, Tier
from gateway.core.errors import PermissionDenied, ResourceExhausted, Unauthenticated
from gateway.remote.estimate import CharEstimator
from gateway.routing.answerer import Answerer
from gateway.state.budget.ledger import Reservation, TokenLedger, next_reset, utc_day
from gateway.state.keys.store import ApiKey
from gateway.state.ratelimit.store import ProviderRateLimits

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
        except BaseException:
            await self._quotas.release(reservation)
            raise
        await self._quotas.reconcile(reservation, _tokens(result))
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        request, reservation = await self._admit(request)
        settled = False
        try:
            async for event in self._inner.stream(request):
                if isinstance(event, Result) and reservation is not None:
                    await self._quotas.reconcile(reservation, _tokens(event))
                    settled = True
                yield event
        finally:
            if reservation is not None and not settled:
                await self._quotas.release(reservation)

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


def _tokens(result: Result) -> int:
    return 0 if result.tier is Tier.CACHE else result.usage.total


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
