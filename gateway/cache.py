"""The exact-match response cache: what a key is made of, what an entry holds, and which answers qualify.

The key is a hash over the normalised request: messages, task, the adapter's
name and version, the model pin, the sampling parameters (temperature,
max_tokens) and the two fields that change which answer the router would give
(privacy, min_confidence). A new adapter version therefore never serves an
answer cached under the old one.

Implementations of `Cache`: gateway/cache_sqlite.py (default, one file shared by
the processes on a box), gateway/cache_redis.py (shared by replicas),
gateway/cache_memory.py (a bounded in-process front tier).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.contracts import AdapterRef, Escalation, Request, Result, Tier, Usage

KEY_VERSION = 1


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


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """Which requests are looked up and which answers are stored."""

    ttl_s: float = 3600.0
    cache_sampled: bool = False  # False: only temperature-0 (deterministic) requests are cached

    def cacheable(self, request: Request) -> bool:
        """Deterministic requests only (temperature 0), unless cache_sampled."""
        return self.cache_sampled or request.temperature == 0.0

    def lookup_allowed(self, request: Request) -> bool:
        return not request.bypass_cache and self.cacheable(request)

    def store_allowed(self, request: Request, result: Result) -> bool:
        """bypass_cache skips the lookup but still refreshes the entry with the fresh answer."""
        if not self.cacheable(request) or result.tier is Tier.CACHE:
            return False
        # A local answer kept only because escalation failed is a fallback, not the answer to remember.
        return not (result.tier is Tier.LOCAL and result.escalation is not Escalation.NONE)


def cache_key(request: Request, adapter: AdapterRef | None) -> str:
    """A stable hex digest of the normalised request (a JSON array in a fixed order, then SHA-256)."""
    normalised = [
        KEY_VERSION,
        [[m.role.value, m.content] for m in request.messages],
        request.task,
        [adapter.name, adapter.version] if adapter is not None else None,
        request.model,
        round(float(request.temperature), 6),
        request.max_tokens,
        request.privacy.value,
        None if request.min_confidence is None else round(float(request.min_confidence), 6),
    ]
    blob = json.dumps(normalised, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def answer_from_result(result: Result, now: float) -> CachedAnswer:
    return CachedAnswer(
        text=result.text,
        provider=result.provider,
        model=result.model,
        tier=result.tier.value,
        usage=result.usage,
        finish_reason=result.finish_reason,
        confidence=result.confidence,
        created_at=now,
    )
