"""Shared circuit-breaker state on Redis: one JSON record per provider, changed by optimistic transactions.

Each transition reads the record under WATCH, applies the same pure state
machine as the SQLite store (gateway/state/breaker/store.py) and writes it back in
MULTI/EXEC only when it changed; a concurrent change by another replica makes
EXEC fail and the transition is retried on the fresh record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from gateway.state.breaker import machine
from gateway.state.breaker.machine import (
    BreakerRecord,
    BreakerSettings,
    BreakerState,
    Permit,
    decode_record,
    encode_record,
)
from gateway.state.redis_client import key_join, unavailable_when_down

if TYPE_CHECKING:
    from redis.asyncio import Redis

T = TypeVar("T")
MAX_TRIES = 50


class RedisBreakerStore:
    def __init__(
        self,
        client: Redis,
        settings: BreakerSettings,
        *,
        prefix: str,
        lease_s: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._known = key_join(prefix, "breaker", "providers")
        self._settings = settings
        self._lease_s = settings.cooldown_s if lease_s is None else lease_s
        self._wall = wall

    async def allow(self, provider: str) -> Permit | None:
        with unavailable_when_down("breaker state"):
            return await self._update(provider, lambda r, now: machine.allow(r, self._settings, now, self._lease_s))

    async def release(self, provider: str, permit: Permit) -> None:
        with unavailable_when_down("breaker state"):
            await self._update(provider, lambda r, _: (machine.release(r, permit), None))

    async def record_success(self, provider: str) -> None:
        with unavailable_when_down("breaker state"):
            await self._update(provider, lambda r, _: (machine.succeed(r), None), register=True)

    async def record_failure(self, provider: str) -> None:
        with unavailable_when_down("breaker state"):
            await self._update(provider, lambda r, now: (machine.fail(r, self._settings, now), None), register=True)

    async def block_for(self, provider: str, seconds: float) -> None:
        with unavailable_when_down("breaker state"):
            await self._update(provider, lambda r, now: (machine.block(r, seconds, now), None))

    async def state(self, provider: str) -> BreakerState:
        with unavailable_when_down("breaker state"):
            return machine.visible(
                decode_record(await self._client.get(self._key(provider))), self._settings, self._wall()
            )

    async def describe(self, provider: str) -> str:
        with unavailable_when_down("breaker state"):
            return machine.describe(
                decode_record(await self._client.get(self._key(provider))), self._settings, self._wall()
            )

    async def states(self) -> dict[str, BreakerState]:
        with unavailable_when_down("breaker state"):
            names = sorted(n.decode() if isinstance(n, bytes) else n for n in await self._client.smembers(self._known))
            if not names:
                return {}
            raws = await self._client.mget([self._key(name) for name in names])
            now = self._wall()
            return {
                name: machine.visible(decode_record(raw), self._settings, now)
                for name, raw in zip(names, raws, strict=True)
            }

    async def aclose(self) -> None:
        return None  # the client belongs to whoever opened it

    async def _update(
        self, provider: str, step: Callable[[BreakerRecord, float], tuple[BreakerRecord, T]], *, register: bool = False
    ) -> T:
        """Apply `step` atomically; `register`: list the provider for states() even when nothing changed."""
        changed, value = await self._apply(provider, step)
        if register and not changed:
            # outside the pipeline: a second connection taken while it holds one could wait on the pool forever
            await self._client.sadd(self._known, provider)
        return value

    async def _apply(
        self, provider: str, step: Callable[[BreakerRecord, float], tuple[BreakerRecord, T]]
    ) -> tuple[bool, T]:
        """Whether `step` changed the record (and listed the provider), and its value."""
        from redis.exceptions import WatchError

        key = self._key(provider)
        async with self._client.pipeline(transaction=True) as pipe:
            for _ in range(MAX_TRIES):
                try:
                    await pipe.watch(key)
                    before = decode_record(await pipe.get(key))
                    after, value = step(before, self._wall())
                    if after == before:
                        await pipe.unwatch()  # type: ignore[no-untyped-call]
                        return False, value
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, encode_record(after))
                    pipe.sadd(self._known, provider)
                    await pipe.execute()
                    return True, value
                except WatchError:
                    continue
        raise RuntimeError(f"breaker state for {provider} kept changing under {MAX_TRIES} tries")

    def _key(self, provider: str) -> str:
        return key_join(self._prefix, "breaker", provider)
