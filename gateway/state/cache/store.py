"""The response cache store: what an entry holds and what every store offers.

The key and which answers qualify are routing's business (gateway/routing/cache_policy.py).
Implementations of `Cache`: gateway/state/cache/sqlite.py (default, one file shared by
the processes on a box), gateway/state/cache/redis.py (shared by replicas),
gateway/state/cache/memory.py (a bounded in-process front tier).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.contracts import Usage


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What a hit returns: the original answer, naming the provider and model that produced it."""

    text: str
    provider: str
    model: str
    tier: str  # the tier that first answered: local | remote
    usage: Usage
    finish_reason: str
    confidence: float | None
    created_at: float  # wall-clock seconds

    def to_json(self) -> str:
        return json.dumps(
            {
                "text": self.text,
                "provider": self.provider,
                "model": self.model,
                "tier": self.tier,
                "prompt_tokens": self.usage.prompt_tokens,
                "completion_tokens": self.usage.completion_tokens,
                "finish_reason": self.finish_reason,
                "confidence": self.confidence,
                "created_at": self.created_at,
            },
            separators=(",", ":"),
        )

    @staticmethod
    def from_json(raw: str | bytes) -> CachedAnswer:
        data: dict[str, Any] = json.loads(raw)
        return CachedAnswer(
            text=str(data["text"]),
            provider=str(data["provider"]),
            model=str(data["model"]),
            tier=str(data["tier"]),
            usage=Usage(int(data["prompt_tokens"]), int(data["completion_tokens"])),
            finish_reason=str(data["finish_reason"]),
            confidence=None if data["confidence"] is None else float(data["confidence"]),
            created_at=float(data["created_at"]),
        )


class Cache(Protocol):
    async def get(self, key: str) -> CachedAnswer | None:
        """The live entry for `key`, or None (absent or expired)."""
        ...

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        """Store (or replace) an entry; the oldest entries go when the size bound is passed."""
        ...

    async def size(self) -> int:
        """Entries currently stored (expired ones may count until they are swept)."""
        ...

    async def clear(self) -> None: ...

    async def aclose(self) -> None: ...
