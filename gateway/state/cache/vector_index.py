"""The semantic cache's index: prompt vectors by scope, searched approximately (usearch HNSW, cosine).

Each entry points at an answer in the exact-match store (its exact key) and keeps
the normalised prompt for the guard; the answer itself lives in that store, so its
TTL, size bound and sharing between replicas apply unchanged. Each scope (everything
that decides an answer but the prompt text: caller, task, model pin, system prompt,
rules, parameters) has an index of its own, so a search never sees another scope's
prompts. The index lives in this process: see docs/semantic_cache.md for replicas.
The oldest entries go first past `max_entries`; expired ones are skipped and dropped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from usearch.index import Index


@dataclass(frozen=True, slots=True)
class IndexedPrompt:
    scope: str  # digest of the decision without the prompt text
    key: str  # the exact-match key of the cached answer
    text: str  # the normalised prompt, which the guard compares
    expires_at: float  # wall-clock seconds
    facts: object = None  # what the guard read in `text`, kept so a lookup does not read it again


@dataclass(frozen=True, slots=True)
class Neighbour:
    entry: IndexedPrompt
    similarity: float  # cosine similarity to the query, in [-1, 1]


class VectorIndex:
    def __init__(
        self,
        *,
        dimensions: int,
        max_entries: int,
        connectivity: int = 16,
        expansion_add: int = 64,
        expansion_search: int = 32,
        now: Callable[[], float] = time.time,
    ) -> None:
        """connectivity and the expansions are HNSW's M, efConstruction and ef: a hit needs a neighbour at
        cosine >= the threshold (0.9), which a narrow search finds; a neighbour it misses costs a hit, not a
        wrong answer."""
        self._dimensions = dimensions
        self._max_entries = max_entries
        self._connectivity = connectivity
        self._expansion_add = expansion_add
        self._expansion_search = expansion_search
        self._now = now
        self._scopes: dict[str, Index] = {}
        self._entries: OrderedDict[int, IndexedPrompt] = OrderedDict()  # oldest first
        self._ids: dict[tuple[str, str], int] = {}  # (scope, key) -> id: a refreshed answer replaces its entry
        self._next_id = 0

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, vector: Sequence[float], entry: IndexedPrompt) -> None:
        """Index `entry` under its scope (replacing an entry with the same scope and key)."""
        import numpy as np

        if len(vector) != self._dimensions:
            raise ValueError(f"vector has {len(vector)} dimensions; the index holds {self._dimensions}")
        old = self._ids.pop((entry.scope, entry.key), None)
        if old is not None:
            self._drop(old)
        self._next_id += 1
        ident = self._next_id
        index = self._scopes.get(entry.scope)
        if index is None:
            index = self._scopes[entry.scope] = self._new_index()
        index.add(ident, np.asarray(vector, dtype=np.float32))
        self._entries[ident] = entry
        self._ids[(entry.scope, entry.key)] = ident
        self._sweep()

    def search(self, vector: Sequence[float], *, scope: str, count: int) -> list[Neighbour]:
        """Up to `count` live entries of `scope` nearest to `vector`, most similar first."""
        import numpy as np

        index = self._scopes.get(scope)
        if index is None or len(index) == 0:
            return []
        matches = index.search(np.asarray(vector, dtype=np.float32), count, threads=1)
        now = self._now()
        found: list[Neighbour] = []
        expired: list[int] = []
        for ident, distance in zip(matches.keys.tolist(), matches.distances.tolist(), strict=True):
            entry = self._entries.get(int(ident))
            if entry is None:
                continue
            if entry.expires_at <= now:
                expired.append(int(ident))
                continue
            found.append(Neighbour(entry, 1.0 - float(distance)))
        for ident in expired:
            self._forget(ident)
        return found

    def clear(self) -> None:
        self._scopes.clear()
        self._entries.clear()
        self._ids.clear()

    # -- upkeep ---------------------------------------------------------------------------------------

    def _new_index(self) -> Index:
        from usearch.index import Index

        return Index(
            ndim=self._dimensions,
            metric="cos",
            dtype="f32",
            connectivity=self._connectivity,
            expansion_add=self._expansion_add,
            expansion_search=self._expansion_search,
        )

    def _sweep(self) -> None:
        """Drop the oldest entries past the size bound, and expired ones at the old end."""
        now = self._now()
        while self._entries:
            ident, oldest = next(iter(self._entries.items()))
            if len(self._entries) <= self._max_entries and oldest.expires_at > now:
                break
            self._forget(ident)

    def _forget(self, ident: int) -> None:
        entry = self._entries.get(ident)
        if entry is None:
            return
        self._ids.pop((entry.scope, entry.key), None)
        self._drop(ident)

    def _drop(self, ident: int) -> None:
        entry = self._entries.pop(ident, None)
        if entry is None:
            return
        index: Any = self._scopes.get(entry.scope)
        if index is None:
            return
        index.remove(ident)
        if len(index) == 0:
            del self._scopes[entry.scope]
