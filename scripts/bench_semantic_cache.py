"""Measure the semantic cache on the labelled pairs (tests/data/semantic_pairs.jsonl) and its lookup time.

Reports, at the threshold given (default: [cache.semantic] threshold's default):
- false hits on the near-misses (pairs labelled `miss`): must be 0; the same count without the
  guard, to show what the guard is for;
- the hit rate on the paraphrases (pairs labelled `hit`), with and without the guard;
- a threshold sweep;
- embedding time for one prompt (p50/p99), measured apart from the lookup;
- lookup p50/p99 with `--entries` prompts indexed in one scope: the lookup is the ANN search
  plus the guard on the candidates (SemanticCache.matches), as the gateway runs it: the guard
  compares facts read once per prompt (the query's beside its embedding, an entry's when indexed).
The index is filled with the pairs' real embeddings and, past those, with noisy copies of them
(unit vectors near real prompts, so searches meet realistic neighbourhoods).

    .venv/bin/python scripts/bench_semantic_cache.py                        # the full run: 100k entries
    .venv/bin/python scripts/bench_semantic_cache.py --entries 2000 --queries 200 --pairs 100   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway.config import SemanticCacheConfig
from gateway.core.embedding import Embeddings
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.semantic_cache import Probe, SemanticCache, SemanticSettings, normalise
from gateway.routing.semantic_guard import check, facts
from gateway.state.cache.vector_index import IndexedPrompt, VectorIndex
from local_models.minilm import MiniLMEmbedder, MiniLMSettings, packaged_model_dir

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "tests" / "data" / "semantic_pairs.jsonl"
SCOPE = "bench"


def load_pairs(path: Path, limit: int) -> list[dict[str, str]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if limit:
        hits = [r for r in rows if r["label"] == "hit"][: limit // 2]
        misses = [r for r in rows if r["label"] == "miss"][: limit - limit // 2]
        rows = hits + misses
    return rows


async def embed_all(embedder: MiniLMEmbedder, texts: list[str]) -> dict[str, np.ndarray]:
    vectors: dict[str, np.ndarray] = {}
    for start in range(0, len(texts), 64):
        chunk = texts[start : start + 64]
        embedded = await embedder.embed(chunk)
        vectors.update({t: np.asarray(v, dtype=np.float32) for t, v in zip(chunk, embedded.vectors, strict=True)})
    return vectors


def quality(rows: list[dict[str, str]], vectors: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    """A pair hits when the second prompt, asked after the first was cached, would be served its answer."""
    counts = {"paraphrases": 0, "near_misses": 0, "hits": 0, "hits_unguarded": 0, "false": 0, "false_unguarded": 0}
    false_kinds: dict[str, int] = {}
    for row in rows:
        a, b = normalise(row["a"]), normalise(row["b"])
        near = float(vectors[a] @ vectors[b]) >= threshold
        served = near and check(b, a).allowed
        if row["label"] == "hit":
            counts["paraphrases"] += 1
            counts["hits"] += served
            counts["hits_unguarded"] += near
        else:
            counts["near_misses"] += 1
            counts["false"] += served
            counts["false_unguarded"] += near
            if served:
                false_kinds[row["kind"]] = false_kinds.get(row["kind"], 0) + 1
    paraphrases = max(counts["paraphrases"], 1)
    return {
        "threshold": threshold,
        "near_misses": counts["near_misses"],
        "false_hits": counts["false"],
        "false_hits_without_guard": counts["false_unguarded"],
        "paraphrases": counts["paraphrases"],
        "paraphrase_hit_rate": round(counts["hits"] / paraphrases, 4),
        "paraphrase_hit_rate_without_guard": round(counts["hits_unguarded"] / paraphrases, 4),
        **({"false_hits_by_kind": false_kinds} if false_kinds else {}),  # type: ignore[dict-item]
    }


async def embedding_times(embedder: MiniLMEmbedder, texts: list[str], count: int) -> dict[str, float]:
    times = []
    for text in texts[:count]:
        started = time.perf_counter()
        await embedder.embed([text])
        times.append((time.perf_counter() - started) * 1000)
    return _percentiles("embed_one_ms", times)


def lookup_times(
    vectors: dict[str, np.ndarray], threshold: float, entries: int, queries: int, seed: int
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    texts = list(vectors)
    read = {text: facts(text) for text in texts}  # as SemanticCache.remember keeps them
    index = VectorIndex(dimensions=384, max_entries=entries)
    policy = CachePolicy(ttl_s=1e9)
    settings = SemanticSettings(threshold=threshold, candidates=SemanticCacheConfig().candidates)
    cache = SemanticCache(_NoEmbedder(), index, policy, settings)
    started = time.perf_counter()
    for i in range(entries):
        text = texts[i % len(texts)]
        vector = vectors[text]
        if i >= len(texts):  # a noisy copy of a real prompt
            vector = vector + rng.normal(0.0, 0.02, vector.shape).astype(np.float32)
            vector /= np.linalg.norm(vector)
        index.add(vector.tolist(), IndexedPrompt(SCOPE, f"k{i}", text, 1e12, read[text]))
    fill_s = time.perf_counter() - started
    picks = random.Random(seed).choices(texts, k=queries)
    probes = [Probe(SCOPE, text, tuple(vectors[text].tolist()), facts(text)) for text in picks]
    times, found = [], 0
    for probe in probes:
        started = time.perf_counter()
        found += bool(cache.matches(probe))
        times.append((time.perf_counter() - started) * 1000)
    return {
        "entries": len(index),
        "fill_s": round(fill_s, 1),
        "queries": queries,
        "queries_with_a_match": found,
        **_percentiles("lookup_ms", times),
    }


class _NoEmbedder:
    name = "none"
    dimensions = 384

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        raise AssertionError("the lookup benchmark embeds nothing")

    async def aclose(self) -> None:
        return None


def _percentiles(name: str, values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {f"{name}_p50": round(statistics.median(ordered), 3), f"{name}_p99": round(p99, 3)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs-file", type=Path, default=PAIRS)
    parser.add_argument("--pairs", type=int, default=0, help="use this many pairs (half each label); 0 = all")
    parser.add_argument("--threshold", type=float, default=SemanticCacheConfig().threshold)
    parser.add_argument("--entries", type=int, default=100_000, help="prompts indexed for the lookup timing")
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the embedding model")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()

    rows = load_pairs(args.pairs_file, args.pairs)
    texts = sorted({normalise(r[side]) for r in rows for side in ("a", "b")})
    embedder = MiniLMEmbedder(MiniLMSettings(packaged_model_dir(), threads=args.threads))
    await embedder.warm()
    vectors = await embed_all(embedder, texts)
    report: dict[str, object] = {"pairs": len(rows), "quality": quality(rows, vectors, args.threshold)}
    report["sweep"] = [
        {k: v for k, v in quality(rows, vectors, t).items() if k != "false_hits_by_kind"}
        for t in (0.80, 0.85, 0.88, 0.90, 0.92, 0.95)
    ]
    report["embedding"] = await embedding_times(embedder, texts, min(len(texts), 200))
    await embedder.aclose()
    report["lookup"] = lookup_times(vectors, args.threshold, args.entries, args.queries, args.seed)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
