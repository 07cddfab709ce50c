"""The semantic cache, as routing sees it: which requests it applies to, and which near neighbour may answer.

A request is looked up by meaning when its task opts in (`[tasks.X] semantic_cache =
true`) or it asks to (`semantic_cache` on the request: the HTTP header
`x-gateway-semantic-cache`, the gRPC field), and not when it opts out; only after the
exact cache missed, and only where the exact cache would look it up at all. The key
is the embedding of the normalised last user message; a neighbour qualifies when

1. it has the request's exact scope: the exact-match key computed with the prompt's
   text left out (caller, task, model pin, system prompt, rules, parameters, earlier turns),
2. its cosine similarity is at least the threshold, and
3. the guard (gateway/routing/semantic_guard.py) finds the same numbers, tickers,
   dates, comparatives and negation in both prompts.

The answer is then read from the exact store under the neighbour's exact key and served
only where the exact cache would serve it (cache_policy.servable). With a feed (Redis), each
entry indexed here is also appended for the other replicas, and before a lookup, at most every
`feed_interval_s`, the entries they appended are read into this replica's index. What is stored is what
the exact cache stores (no errors, no low-confidence or escalated-from-local answers):
an answer is indexed here only after the exact store took it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.contracts import Role
from gateway.core.embedding import Embedder
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.decision import Decision
from gateway.routing.semantic_guard import Facts, compare, facts
from gateway.state.cache.vector_feed import VectorFeed
from gateway.state.cache.vector_index import IndexedPrompt, VectorIndex

log = logging.getLogger(__name__)
_SPACE = re.compile(r"\s+")
FEED_BATCH = 1000  # entries read from the feed per lookup at most


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    threshold: float = 0.9  # least cosine similarity of a hit
    candidates: int = 4  # nearest entries the guard reads per lookup
    tasks: frozenset[str] = frozenset()  # tasks whose requests are looked up unless they opt out


@dataclass(frozen=True, slots=True)
class Probe:
    """One request, as the semantic cache reads it: its scope, its normalised prompt and that prompt's vector."""

    scope: str
    text: str
    vector: tuple[float, ...]
    facts: Facts


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    key: str  # the exact-match key of the neighbour's answer
    similarity: float


def normalise(text: str) -> str:
    """What is embedded and compared: NFKC, one space between words, no space at either end."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


class SemanticCache:
    def __init__(
        self,
        embedder: Embedder,
        index: VectorIndex,
        policy: CachePolicy,
        settings: SemanticSettings,
        *,
        feed: VectorFeed | None = None,
        feed_interval_s: float = 0.5,
        wall: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._embedder = embedder
        self._index = index
        self._policy = policy
        self._settings = settings
        self._feed = feed
        self._feed_interval_s = feed_interval_s
        self._next_read = 0.0
        self._wall = wall
        self._clock = clock

    def applies(self, decision: Decision) -> bool:
        """The request or its task opts in (the request's own choice wins), and it ends with a user's prompt."""
        request = decision.request
        wanted = request.semantic_cache if request.semantic_cache is not None else request.task in self._settings.tasks
        messages = decision.call.messages
        return wanted and bool(messages) and messages[-1].role is Role.USER and bool(normalise(messages[-1].content))

    async def probe(self, decision: Decision) -> Probe:
        """Embed the request's prompt (off the event loop, in the embedder)."""
        text = normalise(decision.call.messages[-1].content)
        embedded = await self._embedder.embed([text])
        return Probe(self._policy.semantic_scope(decision), text, embedded.vectors[0], facts(text))

    def matches(self, probe: Probe) -> list[SemanticMatch]:
        """Neighbours in the probe's scope at or above the threshold that the guard lets through, nearest first."""
        found = self._index.search(probe.vector, scope=probe.scope, count=self._settings.candidates)
        return [
            SemanticMatch(n.entry.key, n.similarity)
            for n in found
            if n.similarity >= self._settings.threshold and compare(probe.facts, _facts_of(n.entry)).allowed
        ]

    async def remember(self, probe: Probe, key: str) -> None:
        """Index an answer the exact store has just taken under `key` (and hand it to the other replicas)."""
        entry = IndexedPrompt(probe.scope, key, probe.text, self._wall() + self._policy.ttl_s, probe.facts)
        self._index.add(probe.vector, entry)
        if self._feed is None:
            return
        try:
            await self._feed.publish(probe.vector, entry)
        except Exception as exc:  # noqa: BLE001 - the other replicas miss one paraphrase; this one has it
            log.warning("semantic cache: sharing an entry failed", extra={"error": repr(exc)})

    async def catch_up(self) -> None:
        """Index what the other replicas appended to the feed since the last read (at most every interval)."""
        if self._feed is None or self._clock() < self._next_read:
            return
        self._next_read = self._clock() + self._feed_interval_s
        try:
            fed = await self._feed.read(FEED_BATCH)
        except Exception as exc:  # noqa: BLE001 - a broken feed costs the other replicas' entries, not answers
            log.warning("semantic cache: reading the shared entries failed", extra={"error": repr(exc)})
            return
        for item in fed:
            try:
                self._index.add(item.vector, dataclasses.replace(item.entry, facts=facts(item.entry.text)))
            except ValueError as exc:  # a vector of another size: a replica with another embedding model
                log.warning("semantic cache: a shared entry does not fit the index", extra={"error": str(exc)})


def _facts_of(entry: IndexedPrompt) -> Facts:
    return entry.facts if isinstance(entry.facts, Facts) else facts(entry.text)
