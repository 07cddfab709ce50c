"""Semantic-cache entries shared by replicas through a Redis stream (Redis 7 has no vector type).

Each replica appends every entry it indexes (scope, exact key, normalised prompt, expiry,
the vector as little-endian float32) to one stream, trimmed to about `max_len` entries, and
reads what the other replicas appended into its own index (gateway/state/cache/vector_index.py).
A replica that starts reads the stream from its beginning, so it indexes what the others
answered before it came up. The answers themselves are in the shared exact store. The prompt
text is kept in Redis beside its vector, as the exact store keeps the answer (docs/semantic_cache.md).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gateway.state.cache.vector_index import IndexedPrompt
from gateway.state.redis_client import key_join

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class FedEntry:
    vector: tuple[float, ...]
    entry: IndexedPrompt


class RedisVectorFeed:
    def __init__(self, client: Redis, *, prefix: str, max_len: int, origin: str) -> None:
        self._client = client
        self._stream = key_join(prefix, "cache", "semantic")
        self._max_len = max_len
        self._origin = origin  # this replica's name: what it appended itself is not read back
        self._after = "0-0"

    async def publish(self, vector: Sequence[float], entry: IndexedPrompt) -> None:
        fields: dict[str | bytes, str | bytes | float] = {
            "o": self._origin,
            "s": entry.scope,
            "k": entry.key,
            "t": entry.text,
            "e": repr(entry.expires_at),
            "v": struct.pack(f"<{len(vector)}f", *vector),
        }
        await self._client.xadd(self._stream, fields, maxlen=self._max_len, approximate=True)  # type: ignore[arg-type]

    async def read(self, count: int) -> list[FedEntry]:
        """Up to `count` entries the other replicas appended since the last read."""
        rows: list[tuple[Any, dict[bytes, bytes]]] = await self._client.xrange(
            self._stream, min=f"({self._after}", max="+", count=count
        )  # type: ignore[assignment]
        found: list[FedEntry] = []
        for ident, fields in rows or []:
            self._after = _text(ident)
            if _text(fields[b"o"]) == self._origin:
                continue
            raw = fields[b"v"]
            vector = struct.unpack(f"<{len(raw) // 4}f", raw)
            entry = IndexedPrompt(_text(fields[b"s"]), _text(fields[b"k"]), _text(fields[b"t"]), float(fields[b"e"]))
            found.append(FedEntry(vector, entry))
        return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class VectorFeed(Protocol):
    """How replicas share semantic-cache entries (RedisVectorFeed; none on a single box)."""

    async def publish(self, vector: Sequence[float], entry: IndexedPrompt) -> None: ...

    async def read(self, count: int) -> list[FedEntry]: ...
