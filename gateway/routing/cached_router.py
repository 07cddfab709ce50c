"""The response cache between the router's decision and its execution: the server wraps the Router in it.

The router decides the request (task, plan, effective privacy: a `Decision`);
the key is derived from that decision (gateway/routing/cache_policy.py), and only
a miss executes it. A hit answers with TIER_CACHE, naming the provider and model
that produced the original answer, and one attempt `cache/hit`; a stored local
answer below the threshold now in force is not served (lookup outcome `stale`)
and is replaced by the fresh answer. A cache that fails (Redis down, disk full)
is logged and treated as a miss: the request is still answered.

With a semantic cache (gateway/routing/semantic_cache.py), a request it applies to
that the exact cache missed is looked up by meaning: the nearest prompts of the same
scope that pass the threshold and the guard, whose answers are read from the exact
store (lookup outcome `semantic_hit`, attempt outcome `semantic_hit`). Every answer the
exact store takes for such a request is indexed under its prompt's vector.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.core import trace
from gateway.core.contracts import Attempt, Delta, Escalation, ModelEntry, Request, Result, Tier
from gateway.routing.cache_policy import CachePolicy, answer_from_result
from gateway.routing.decision import Decider, Decision
from gateway.routing.semantic_cache import Probe, SemanticCache
from gateway.state.cache.store import Cache, CachedAnswer

log = logging.getLogger(__name__)

LookupObserver = Callable[[str], None]  # hit | semantic_hit | miss | stale | bypass | uncacheable | error


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
        semantic: SemanticCache | None = None,
    ) -> None:
        self._inner = inner
        self._semantic = semantic
        self._cache = cache
        self._policy = policy
        self._on_lookup = on_lookup
        self._wall = wall
        self._tracer = tracer

    async def generate(self, request: Request) -> Result:
        started = time.perf_counter()
        decision = self._inner.decide(request)
        found = await self._find(decision)
        if found.hit is not None:
            return _hit_result(decision, found.hit, started, found.outcome)
        result = await self._inner.execute(decision)
        await self._store(decision, found, result)
        return result

    async def stream(self, request: Request) -> AsyncIterator[Delta | Result]:
        """A hit streams as one piece of text and the final result; a miss streams through.

        Only a streamed provider answer is stored: a streamed local answer was never
        held to the confidence threshold (its text was already sent), so it must
        not be served later to a request that would have escalated.
        """
        started = time.perf_counter()
        decision = self._inner.decide(request)
        found = await self._find(decision)
        if found.hit is not None:
            yield Delta(found.hit.text)
            yield _hit_result(decision, found.hit, started, found.outcome)
            return
        events = self._inner.execute_stream(decision)
        try:
            async for event in events:
                if isinstance(event, Result) and event.tier is Tier.REMOTE:
                    await self._store(decision, found, event)
                yield event
        finally:
            await events.aclose()  # a consumer that leaves stops the tiers now, not at collection

    def models(self) -> list[ModelEntry]:
        return self._inner.models()

    # -- steps ---------------------------------------------------------------------------------

    async def _find(self, decision: Decision) -> _Found:
        """The decision's key (None when it may not be cached at all), the cached answer if any, and the
        semantic probe when the semantic cache applies (so the fresh answer can be indexed)."""
        with self._tracer.span("gateway.cache") as span:
            key = self._policy.key(decision) if self._policy.cacheable(decision.request) else None
            probe: Probe | None = None
            if key is None:
                outcome, hit = "uncacheable", None
            else:
                outcome, hit = await self._lookup(decision, key)
                if hit is None and self._semantic is not None and self._semantic.applies(decision):
                    probe = await self._probe(decision)
                    if probe is not None and outcome in ("miss", "stale"):
                        outcome, hit = await self._semantic_lookup(decision, probe, outcome)
            self._on_lookup(outcome)
            span.set_attribute("gateway.cache.result", outcome)
        return _Found(key, hit, probe, outcome)

    async def _probe(self, decision: Decision) -> Probe | None:
        assert self._semantic is not None
        try:
            return await self._semantic.probe(decision)
        except Exception as exc:  # noqa: BLE001 - no embedding: the exact cache alone, never a failed request
            log.warning("semantic cache: embedding failed; exact cache only", extra={"error": repr(exc)})
            return None

    async def _semantic_lookup(self, decision: Decision, probe: Probe, outcome: str) -> tuple[str, CachedAnswer | None]:
        """The answer of the nearest qualifying neighbour that this decision may be served, else the exact outcome."""
        assert self._semantic is not None
        try:
            await self._semantic.catch_up()
            matches = self._semantic.matches(probe)
        except Exception as exc:  # noqa: BLE001 - a broken index is a miss, never a failed request
            log.warning("semantic cache lookup failed; answering without it", extra={"error": repr(exc)})
            return outcome, None
        for match in matches:
            try:
                hit = await self._cache.get(match.key)
            except Exception as exc:  # noqa: BLE001 - a broken cache is a miss
                log.warning("cache lookup failed; answering without it", extra={"error": repr(exc)})
                return "error", None
            if hit is not None and self._policy.servable(decision, hit):
                return "semantic_hit", hit
        return outcome, None

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

    async def _store(self, decision: Decision, found: _Found, result: Result) -> None:
        key = found.key
        if key is None or not self._policy.store_allowed(decision, result):
            return
        try:
            await self._cache.put(key, answer_from_result(result, self._wall()), self._policy.ttl_s)
        except Exception as exc:  # noqa: BLE001 - the answer is already made; losing the entry is harmless
            log.warning("cache write failed", extra={"request_id": decision.request.request_id, "error": repr(exc)})
            return
        if found.probe is not None and self._semantic is not None:
            try:
                await self._semantic.remember(found.probe, key)
            except Exception as exc:  # noqa: BLE001 - the answer is made and stored; only its paraphrases miss
                log.warning("semantic cache: indexing failed", extra={"error": repr(exc)})


@dataclass(frozen=True, slots=True)
class _Found:
    key: str | None  # None: the request may not be cached
    hit: CachedAnswer | None
    probe: Probe | None  # set when the semantic cache applies and the prompt was embedded
    outcome: str


def _hit_result(decision: Decision, hit: CachedAnswer, started: float, outcome: str) -> Result:
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
        attempts=(Attempt("cache", hit.model, outcome, round(latency_ms, 3)),),
        finish_reason=hit.finish_reason,
        latency_ms=latency_ms,
        task=request.task,
        request=request,
    )
