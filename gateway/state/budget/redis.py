"""The token ledger on Redis: one budget shared exactly by every gateway replica.

Check-and-reserve is one Lua script, so replicas cannot both take the last
tokens. Per UTC day (under the configured prefix):
  ledger:<day>      hash: tokens:<provider>, requests:<provider>  (reserved + reconciled)
  ledger:<day>:res  hash: reservation id -> tokens currently counted for it
  ledger:seq        reservation ids
  ledger:open       sorted set: <day>/<id> of each reservation not yet settled, scored by when it was made
Day keys expire a week after their last write. Same semantics as the SQLite
ledger: an unsettled reservation keeps counting its estimate until it is
settled or expires (leaves ledger:open, its estimate final).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.state.budget.ledger import LedgerUsage, Reservation
from gateway.state.redis_client import key_join, unavailable_when_down

if TYPE_CHECKING:
    from redis.asyncio import Redis

DAY_KEY_TTL_S = 8 * 86_400

_RESERVE = """
local used = tonumber(redis.call('HGET', KEYS[1], 'tokens:' .. ARGV[1]) or '0')
local tokens = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
if limit >= 0 and used + tokens > limit then return 0 end
local id = redis.call('INCR', KEYS[3])
redis.call('HINCRBY', KEYS[1], 'tokens:' .. ARGV[1], tokens)
redis.call('HINCRBY', KEYS[1], 'requests:' .. ARGV[1], 1)
redis.call('HSET', KEYS[2], id, tokens)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6] .. '/' .. id)
redis.call('EXPIRE', KEYS[4], ARGV[4])
return id
"""

_RECONCILE = """
redis.call('ZREM', KEYS[3], ARGV[4])
local current = redis.call('HGET', KEYS[2], ARGV[2])
if not current then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'tokens:' .. ARGV[1], tonumber(ARGV[3]) - tonumber(current))
return 1
"""

_RELEASE = """
redis.call('ZREM', KEYS[3], ARGV[3])
local current = redis.call('HGET', KEYS[2], ARGV[2])
if not current then return 0 end
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[1], 'tokens:' .. ARGV[1], -tonumber(current))
redis.call('HINCRBY', KEYS[1], 'requests:' .. ARGV[1], -1)
return 1
"""


class RedisLedger:
    def __init__(self, client: Redis, *, prefix: str, wall: Callable[[], float] = time.time) -> None:
        self._client = client
        self._prefix = prefix
        self._wall = wall
        self._seq = key_join(prefix, "ledger", "seq")
        self._unsettled = key_join(prefix, "ledger", "open")
        self._reserve = client.register_script(_RESERVE)
        self._reconcile = client.register_script(_RECONCILE)
        self._release = client.register_script(_RELEASE)

    async def reserve(self, provider: str, tokens: int, *, day: str, limit: int | None) -> Reservation | None:
        with unavailable_when_down("token ledger"):
            keys = [self._totals(day), self._open(day), self._seq, self._unsettled]
            args: list[str | int | float] = [provider, tokens, -1 if limit is None else limit, DAY_KEY_TTL_S]
            args += [self._wall(), day]
            reservation_id = int(await self._reserve(keys=keys, args=args))
            return Reservation(reservation_id, provider, day, tokens) if reservation_id else None

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        with unavailable_when_down("token ledger"):
            keys = [self._totals(reservation.day), self._open(reservation.day), self._unsettled]
            args: list[str | int] = [reservation.provider, reservation.id, actual_tokens, _member(reservation)]
            await self._reconcile(keys=keys, args=args)

    async def release(self, reservation: Reservation) -> None:
        with unavailable_when_down("token ledger"):
            keys = [self._totals(reservation.day), self._open(reservation.day), self._unsettled]
            await self._release(keys=keys, args=[reservation.provider, reservation.id, _member(reservation)])

    async def usage(self, day: str) -> dict[str, LedgerUsage]:
        with unavailable_when_down("token ledger"):
            raw = await self._client.hgetall(self._totals(day))
            tokens: dict[str, int] = {}
            requests: dict[str, int] = {}
            for field, value in raw.items():
                kind, _, provider = _text(field).partition(":")
                (tokens if kind == "tokens" else requests)[provider] = int(value)
            return {
                provider: LedgerUsage(provider, tokens.get(provider, 0), count)
                for provider, count in requests.items()
                if count > 0
            }

    async def settle_expired(self, before: datetime) -> int:
        with unavailable_when_down("token ledger"):
            return int(await self._client.zremrangebyscore(self._unsettled, "-inf", f"({before.timestamp()}"))

    async def aclose(self) -> None:
        return None  # the client belongs to whoever opened it

    def _totals(self, day: str) -> str:
        return key_join(self._prefix, "ledger", day)

    def _open(self, day: str) -> str:
        return key_join(self._prefix, "ledger", day, "res")


def _member(reservation: Reservation) -> str:
    return f"{reservation.day}/{reservation.id}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
