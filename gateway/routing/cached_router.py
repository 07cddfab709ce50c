"""The response cache between the router's decision and its execution: the server wraps the Router in it.

The router decides the request (task, plan, effective privacy: a `Decision`);
the key is derived from that decision (gateway/routing/cache_policy.py), and only
a miss executes it. A hit answers with TIER_CACHE, naming the provider and model
that produced the original answer, and one attempt `cache/hit`; a stored local
answer below the threshold now in force is not served (lookup outcome `stale`)
and is replaced by the fresh answer. A cache that fails (Redis down, disk full)
is logged and treated as a miss: the request is still answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from gateway.core import trace
from gateway.core.contracts import Attempt, Delta, Escalation, ModelEntry, Request, Result, Tier
from gateway.routing.cache_policy import CachePolicy, answer_from_result
from gateway.routing.decision import Decider, Decision
from gateway.state.cache.store import Cache, CachedAnswer

log = logging.getLogger(__name__)

LookupObserver = Callable[[str], None]  # hit | miss | stale | bypass | uncacheable | error


def _ignore(_: str) -> None:
    return None


class CachedRouter:
    def __init__(
        self,
        inner: Decider,
        cache: Cache,
        policy: CachePolicy,
        *,
        on_lookup: LookupObserver = _ignore,
        wall: Callable[[], float] = time.time,
        tracer: trace.Tracer = trace.NO_TRACER,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._policy = policy
        self._on_lookup = on_lookup
        self._wall = wall
        self._tracer = tracer

    async def generate(self, request: Request) -> Result:
        started = time.perf_counter()
        decision = self._inner.decide(request)
        key, hit = await self._find(decision)
        if hit is not None:
            return _hit_result(decision, hit, started)
        result = await self._inner.execute(decision)
        await self._store(decision, key, result)
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        """A hit streams as one piece of text and the final result; a miss streams through.

        Only a streamed provider answer is stored: a streamed local answer was never
        held to the confidence threshold (its text was already sent), so it must
        not be served later to a request that would have escalated.
        """
        started = time.perf_counter()
        decision = self._inner.decide(request)
        key, hit = await self._find(decision)
        if hit is not None:
            yield Delta(hit.text)
            yield _hit_result(decision, hit, started)
            return
        events = self._inner.execute_stream(decision)
        try:
            async for event in events:
                if isinstance(event, Result) and event.tier is Tier.REMOTE:
                    await self._store(decision, key, event)
                yield event
        finally:
            await events.aclose()  # a consumer that leaves stops the tiers now, not at collection

    def models(self) -> list[ModelEntry]:
        return self._inner.models()

    # -- steps ---------------------------------------------------------------------------------

    async def _find(self, decision: Decision) -> tuple[str | None, CachedAnswer | None]:
        """The decision's key (None when it may not be cached at all) and the cached answer, if any."""
        with self._tracer.span("gateway.cache") as span:
            key = self._policy.key(decision) if self._policy.cacheable(decision.request) else None
            if key is None:
                outcome, hit = "uncacheable", None
            else:
                outcome, hit = await self._lookup(decision, key)
            self._on_lookup(outcome)
            span.set_attribute("gateway.cache.result", outcome)
        return key, hit

    async def _lookup(self, decision: Decision, key: str) -> tuple[str, CachedAnswer | None]:
        """hit | miss | stale | bypass | error, and the answer on a hit."""
        if not self._policy.lookup_allowed(decision.request):
            return "bypass", None
        try:
            hit = await self._cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a broken cache is a miss, never a failed request
            log.warning("cache lookup failed; answering without it", extra={"error": repr(exc)})
            return "error", None
        if hit is None:
            return "miss", None
        if not self._policy.servable(decision, hit):
            return "stale", None
        return "hit", hit

    async def _store(self, decision: Decision, key: str | None, result: Result) -> None:
        if key is None or not self._policy.store_allowed(decision, result):
            return
        try:
            await self._cache.put(key, answer_from_result(result, self._wall()), self._policy.ttl_s)
        except Exception as exc:  # noqa: BLE001 - the answer is already made; losing the entry is harmless
            log.warning("cache write failed", extra={"request_id": decision.request.request_id, "error": repr(exc)})


def _hit_result(decision: Decision, hit: CachedAnswer, started: float) -> Result:
    request = decision.request
    latency_ms = (time.perf_counter() - started) * 1000
    return Result(
        request_id=request.request_id,
        text=hit.text,
        tier=Tier.CACHE,
        provider=hit.provider,
        model=hit.model,
        confidence=hit.confidence,
        escalation=Escalation.NONE,
        usage=hit.usage,
        attempts=(Attempt("cache", hit.model, "hit", round(latency_ms, 3)),),
        finish_reason=hit.finish_reason,
        latency_ms=latency_ms,
        task=request.task,
        request=request,
    )
