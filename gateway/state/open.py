"""Open the shared-state stores the config asks for: SQLite files on this box, or one Redis for every replica.

`[state] backend = "sqlite"` (default) keeps the ledger, response cache, usage
records, breaker and rate-limit state, API keys and their quotas in files under state_dir; processes on
one box share them. `backend = "redis"` puts all of them in the Redis at
`[state] url`, so several gateways share budgets, cache and records exactly.
Nothing connects or opens a file until first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from gateway.config import Config
from gateway.state.breaker.machine import BreakerSettings
from gateway.state.breaker.store import BreakerStore
from gateway.state.budget.ledger import TokenLedger
from gateway.state.cache.memory import MemoryCache
from gateway.state.cache.store import Cache
from gateway.state.cache.tiered import TieredCache
from gateway.state.keys.store import KeyStore
from gateway.state.learning.store import TrainingStore
from gateway.state.ratelimit.store import RateLimitState
from gateway.state.usage.store import UsageStore

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)
LEDGER_FILE = "ledger.sqlite3"
KEYS_FILE = "keys.sqlite3"


@dataclass(frozen=True, slots=True)
class SharedState:
    backend: str
    ledger: TokenLedger
    cache: Cache | None  # None when [cache] enabled = false
    usage: UsageStore
    training: TrainingStore  # rows for learning tasks; nothing is created until the first row
    rate_limits: RateLimitState
    breakers: BreakerStore
    keys: KeyStore
    key_quotas: TokenLedger  # daily tokens per API key: a ledger of its own, with key names for providers
    redis: Redis | None = None

    async def aclose(self) -> None:
        stores = (
            self.ledger,
            self.cache,
            self.usage,
            self.training,
            self.rate_limits,
            self.breakers,
            self.keys,
            self.key_quotas,
        )
        for store in stores:
            if store is not None:
                try:
                    await store.aclose()
                except Exception as exc:  # noqa: BLE001 - closing one store must not stop closing the others
                    log.warning("closing a state store failed", extra={"error": repr(exc)})
        if self.redis is not None:
            await self.redis.aclose()


def keys_path(config: Config) -> Path:
    return Path(config.keys.path) if config.keys.path else Path(config.state_dir) / KEYS_FILE


def open_keys(config: Config) -> tuple[KeyStore, Redis | None]:
    """Only the key store (for `python -m gateway keys`), and the Redis client it uses (the caller closes it)."""
    if config.state.backend == "redis":
        from gateway.state.keys.redis import RedisKeyStore
        from gateway.state.redis_client import open_redis

        client = open_redis(config.state.url)
        return RedisKeyStore(client, prefix=config.state.key_prefix), client
    from gateway.state.keys.sqlite import SqliteKeyStore

    return SqliteKeyStore(keys_path(config)), None


def ledger_path(config: Config) -> Path:
    return Path(config.budget.path) if config.budget.path else Path(config.state_dir) / LEDGER_FILE


def breaker_settings(config: Config) -> BreakerSettings:
    """The one place [routing] breaker_* becomes BreakerSettings (the stores and the remote tier share it)."""
    routing = config.routing
    return BreakerSettings(routing.breaker_failures, routing.breaker_window_s, routing.breaker_cooldown_s)


def open_state(config: Config) -> SharedState:
    if config.state.backend == "redis":
        return _open_redis(config)
    return _open_sqlite(config)


def _front(config: Config, shared: Cache) -> Cache:
    if config.cache.memory_entries <= 0:
        return shared
    return TieredCache(MemoryCache(max_entries=config.cache.memory_entries), shared, ttl_s=config.cache.ttl_s)


def _open_sqlite(config: Config) -> SharedState:
    from gateway.state.breaker.sqlite import SqliteBreakerStore
    from gateway.state.budget.sqlite import SqliteLedger
    from gateway.state.cache.sqlite import SqliteCache
    from gateway.state.keys.sqlite import SqliteKeyStore
    from gateway.state.learning.sqlite import SqliteTrainingStore
    from gateway.state.ratelimit.sqlite import SqliteRateLimitState
    from gateway.state.usage.sqlite import SqliteUsageStore

    base = Path(config.state_dir)
    limits = base / "limits.sqlite3"
    cache: Cache | None = None
    if config.cache.enabled:
        path = config.cache.path or base / "response_cache.sqlite3"
        cache = _front(config, SqliteCache(path, max_entries=config.cache.max_entries))
    return SharedState(
        backend="sqlite",
        ledger=SqliteLedger(ledger_path(config)),
        cache=cache,
        usage=SqliteUsageStore(config.usage.path or base / "usage.sqlite3"),
        training=SqliteTrainingStore(config.learning.path or base / "training.sqlite3"),
        rate_limits=SqliteRateLimitState(limits),
        breakers=SqliteBreakerStore(limits, breaker_settings(config)),
        keys=SqliteKeyStore(keys_path(config)),
        key_quotas=SqliteLedger(base / "key_quotas.sqlite3"),
    )


def _open_redis(config: Config) -> SharedState:
    from gateway.state.breaker.redis import RedisBreakerStore
    from gateway.state.budget.redis import RedisLedger
    from gateway.state.cache.redis import RedisCache
    from gateway.state.keys.redis import RedisKeyStore
    from gateway.state.learning.redis import RedisTrainingStore
    from gateway.state.ratelimit.redis import RedisRateLimitState
    from gateway.state.redis_client import open_redis
    from gateway.state.usage.redis import RedisUsageStore

    client = open_redis(config.state.url)
    prefix = config.state.key_prefix
    cache: Cache | None = None
    if config.cache.enabled:
        cache = _front(config, RedisCache(client, prefix=prefix, max_entries=config.cache.max_entries))
    return SharedState(
        backend="redis",
        ledger=RedisLedger(client, prefix=prefix),
        cache=cache,
        usage=RedisUsageStore(client, prefix=prefix, retention_days=config.usage.retention_days),
        training=RedisTrainingStore(client, prefix=prefix),
        rate_limits=RedisRateLimitState(client, prefix=prefix),
        breakers=RedisBreakerStore(client, breaker_settings(config), prefix=prefix),
        keys=RedisKeyStore(client, prefix=prefix),
        key_quotas=RedisLedger(client, prefix=prefix + "keyquota:"),
        redis=client,
    )


def describe_state(config: Config) -> str:
    """One log line: where shared state lives (a Redis password never appears)."""
    if config.state.backend == "redis":
        parts = urlsplit(config.state.url)
        host = f"{parts.hostname or ''}:{parts.port}" if parts.port else parts.hostname or ""
        where = urlunsplit((parts.scheme, host, parts.path, "", ""))
        return f"shared state: redis at {where} (prefix '{config.state.key_prefix}'), shared by every replica using it"
    return f"shared state: sqlite files under {config.state_dir}"
