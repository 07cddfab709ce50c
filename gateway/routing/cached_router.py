"""The response cache in front of the router: same interface, so the server just wraps the Router.

A hit answers with TIER_CACHE, naming the provider and model that produced the
original answer, and one attempt `cache/hit`. A cache that fails (Redis down,
disk full) is logged and treated as a miss: the request is still answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from gateway.core import trace
from gateway.core.contracts import Attempt, Delta, Escalation, ModelEntry, Request, Result, TaskCatalog, Tier
from gateway.routing.answerer import Answerer
from gateway.routing.cache_policy import CachePolicy, answer_from_result, cache_key
from gateway.state.cache.store import Cache, CachedAnswer

log = logging.getLogger(__name__)

LookupObserver = Callable[[str], None]  # hit | miss | bypass | uncacheable | error


def _ignore(_: str) -> None:
    return None


class CachedRouter:
    def __init__(
        self,
        inner: Answerer,
        cache: Cache,
        tasks: TaskCatalog,
        policy: CachePolicy,
        *,
        on_lookup: LookupObserver = _ignore,
        wall: Callable[[], float] = time.time,
        tracer: trace.Tracer = trace.NO_TRACER,
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._tasks = tasks
        self._policy = policy
        self._on_lookup = on_lookup
        self._wall = wall
        self._tracer = tracer

    async def generate(self, request: Request) -> Result:
        started = time.perf_counter()
        key, hit = await self._find(request)
        if hit is not None:
            return _hit_result(request, hit, started)
        result = await self._inner.generate(request)
        await self._store(request, key, result)
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        """A hit streams as one piece of text and the final result; a miss streams through.

        Only a streamed provider answer is stored: a streamed local answer was never
        held to the confidence threshold (its text was already sent), so it must
        not be served later to a request that would have escalated.
        """
        started = time.perf_counter()
        key, hit = await self._find(request)
        if hit is not None:
            yield Delta(hit.text)
            yield _hit_result(request, hit, started)
            return
        async for event in self._inner.stream(request):
            if isinstance(event, Result) and event.tier is Tier.REMOTE:
                await self._store(request, key, event)
            yield event

    def models(self) -> list[ModelEntry]:
        return self._inner.models()

    # -- steps ---------------------------------------------------------------------------------

    async def _find(self, request: Request) -> tuple[str | None, CachedAnswer | None]:
        """The request's key (None when it may not be cached at all) and the cached answer, if any."""
        with self._tracer.span("gateway.cache") as span:
            key = self._key(request)
            if key is None:
                outcome, hit = "uncacheable", None
            else:
                outcome, hit = await self._lookup(request, key)
            self._on_lookup(outcome)
            span.set_attribute("gateway.cache.result", outcome)
        return key, hit

    def _key(self, request: Request) -> str | None:
        """The key for a request that may be cached at all (bypass_cache still stores), else None."""
        task = self._tasks.get(request.task)
        if task is None or not self._policy.cacheable(request):
            return None
        return cache_key(request, task.adapter)

    async def _lookup(self, request: Request, key: str) -> tuple[str, CachedAnswer | None]:
        """hit | miss | bypass | error, and the answer on a hit."""
        if not self._policy.lookup_allowed(request):
            return "bypass", None
        try:
            hit = await self._cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a broken cache is a miss, never a failed request
            log.warning("cache lookup failed; answering without it", extra={"error": repr(exc)})
            return "error", None
        return ("hit" if hit is not None else "miss"), hit

    async def _store(self, request: Request, key: str | None, result: Result) -> None:
        if key is None or not self._policy.store_allowed(request, result):
            return
        try:
            await self._cache.put(key, answer_from_result(result, self._wall()), self._policy.ttl_s)
        except Exception as exc:  # noqa: BLE001 - the answer is already made; losing the entry is harmless
            log.warning("cache write failed", extra={"request_id": request.request_id, "error": repr(exc)})


def _hit_result(request: Request, hit: CachedAnswer, started: float) -> Result:
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
    )
