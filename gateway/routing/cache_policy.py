"""The exact-match response cache, as routing sees it: what a key is made of and which answers qualify.

The key is a hash over the normalised request: messages, task, the adapter's
name and version, the model pin, the sampling parameters (temperature,
max_tokens) and the two fields that change which answer the router would give
(privacy, min_confidence). A new adapter version therefore never serves an
answer cached under the old one. The stores live in gateway/state/cache/.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from gateway.core.contracts import AdapterRef, Escalation, Request, Result, Tier
from gateway.state.cache.store import CachedAnswer

KEY_VERSION = 1


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
