"""API keys on Redis, shared by every gateway replica.

Layout (under the configured prefix):
  keys:all      hash, key id -> the key as JSON (as created)
  keys:names    hash, name -> key id of the active key with that name
  keys:revoked  hash, key id -> when it was revoked (wall-clock seconds)
Adding and revoking are one script each, so two replicas cannot give one name to two active keys.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from gateway.state.keys.store import ApiKey, KeyNameTaken
from gateway.state.redis_client import key_join, unavailable_when_down

if TYPE_CHECKING:
    from redis.asyncio import Redis

WHAT = "key store (Redis)"

_ADD = """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 1
"""

_REVOKE = """
local id = redis.call('HGET', KEYS[1], ARGV[1])
if not id then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], id, ARGV[2])
return 1
"""


class RedisKeyStore:
    def __init__(self, client: Redis, *, prefix: str) -> None:
        self._client = client
        self._all = key_join(prefix, "keys", "all")
        self._names = key_join(prefix, "keys", "names")
        self._revoked = key_join(prefix, "keys", "revoked")
        self._add = client.register_script(_ADD)
        self._revoke = client.register_script(_REVOKE)

    async def add(self, key: ApiKey) -> None:
        with unavailable_when_down(WHAT):
            added = await self._add(keys=[self._all, self._names], args=[key.name, key.key_id, key.to_json()])
        if not added:
            raise KeyNameTaken(key.name)

    async def revoke(self, name: str, *, at: float) -> bool:
        with unavailable_when_down(WHAT):
            return bool(await self._revoke(keys=[self._names, self._revoked], args=[name, repr(at)]))

    async def all(self) -> list[ApiKey]:
        with unavailable_when_down(WHAT):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(self._all)
                pipe.hgetall(self._revoked)
                rows, revoked = await pipe.execute()
        when = {_text(k): float(_text(v)) for k, v in revoked.items()}
        keys = []
        for raw in rows.values():
            key = ApiKey.from_json(raw)
            if key.key_id in when:
                key = dataclasses.replace(key, revoked_at=when[key.key_id])
            keys.append(key)
        return sorted(keys, key=lambda k: (k.created_at, k.key_id))

    async def aclose(self) -> None:
        return None  # the client belongs to the shared state, which closes it


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
