"""Open the Redis client shared by the Redis stores (ledger, cache, usage, breaker and rate-limit state).

redis-py is an optional dependency, imported only when `[state] backend = "redis"`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.asyncio import Redis

EXTRA_HINT = "pip install 'trading-inference-gateway[redis]'"


def open_redis(url: str) -> Redis:
    """A client with its own connection pool; nothing connects until the first command."""
    try:
        from redis.asyncio import Redis
    except ImportError as exc:
        raise ImportError(f"[state] backend = 'redis' needs redis-py: {EXTRA_HINT}") from exc
    return Redis.from_url(url, decode_responses=False, health_check_interval=30)


def key_join(prefix: str, *parts: str) -> str:
    """Keys are `<prefix><part>:<part>...`; the prefix keeps several deployments apart in one Redis."""
    return prefix + ":".join(parts)
