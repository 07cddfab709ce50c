"""The embedding model and the semantic cache, from config: built only when one of them is configured.

`[embeddings] enabled` serves POST /v1/embeddings; `[cache.semantic] enabled` keys the
semantic cache with the same model (one instance serves both). Without either, nothing
here imports torch or transformers.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.core.embedding import Embedder
from gateway.routing.cache_policy import CachePolicy
from gateway.routing.semantic_cache import SemanticCache, SemanticSettings
from gateway.state.cache.vector_feed import RedisVectorFeed
from gateway.state.cache.vector_index import VectorIndex

if TYPE_CHECKING:
    from redis.asyncio import Redis


def embedding_wanted(config: Config) -> bool:
    return config.embeddings.enabled or (config.cache.enabled and config.cache.semantic.enabled)


async def open_embedder(config: Config) -> Embedder | None:
    """The configured embedding model, loaded (on its own thread), or None when nothing needs one."""
    if not embedding_wanted(config):
        return None
    from local_models.minilm import MODEL_NAME, MiniLMEmbedder, MiniLMSettings, packaged_model_dir

    settings = config.embeddings
    folder = Path(settings.model_dir) if settings.model_dir else packaged_model_dir()
    embedder = MiniLMEmbedder(
        MiniLMSettings(
            model_dir=folder,
            name=folder.name if settings.model_dir else MODEL_NAME,
            threads=settings.threads,
            max_batch=settings.max_batch,
        )
    )
    await embedder.warm()
    return embedder


def build_semantic_cache(
    config: Config, embedder: Embedder | None, policy: CachePolicy, redis: Redis | None = None
) -> SemanticCache | None:
    """The semantic cache over the exact one, when `[cache.semantic] enabled` and the model is loaded; with
    Redis as the state backend, its entries are shared with the other replicas through a stream."""
    semantic = config.cache.semantic
    if embedder is None or not semantic.enabled:
        return None
    try:
        import usearch.index  # noqa: F401 - checked at start, not at the first answer
    except ImportError as exc:
        raise RuntimeError(
            "[cache.semantic] enabled needs the usearch package (the `embeddings` extra); install it or disable it"
        ) from exc
    settings = SemanticSettings(
        threshold=semantic.threshold,
        candidates=semantic.candidates,
        tasks=frozenset(name for name, task in config.tasks.items() if task.semantic_cache),
    )
    index = VectorIndex(dimensions=embedder.dimensions, max_entries=semantic.max_entries)
    feed = None
    if redis is not None:
        origin = uuid.uuid4().hex  # this replica, so it does not read back its own entries
        feed = RedisVectorFeed(redis, prefix=config.state.key_prefix, max_len=semantic.max_entries, origin=origin)
    return SemanticCache(embedder, index, policy, settings, feed=feed)
