"""Open the Redis client shared by the Redis stores (ledger, cache, usage, breaker and rate-limit state).

redis-py is an optional dependency, imported only when `[state] backend = "redis"`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from gateway.core.errors import Unavailable

if TYPE_CHECKING:
    from redis.asyncio import Redis

EXTRA_HINT = "pip install 'trading-inference-gateway[redis]'"


def open_redis(url: str, *, max_connections: int = 32, wait_s: float = 10.0) -> Redis:
    """A client over a bounded pool: past `max_connections` callers wait (up to `wait_s`) for a free one.

    Nothing connects until the first command.
    """
    try:
        from redis.asyncio import BlockingConnectionPool, Redis
    except ImportError as exc:
        raise ImportError(f"[state] backend = 'redis' needs redis-py: {EXTRA_HINT}") from exc
    pool = BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=wait_s, health_check_interval=30
    )
    return Redis.from_pool(pool)  # the client owns the pool and closes it in aclose()


def key_join(prefix: str, *parts: str) -> str:
    """Keys are `<prefix><part>:<part>...`; the prefix keeps several deployments apart in one Redis."""
    return prefix + ":".join(parts)


@contextlib.contextmanager
def unavailable_when_down(what: str) -> Iterator[None]:
    """Turn a Redis failure into UNAVAILABLE naming the store, so the router can answer locally or say why."""
    from redis.exceptions import RedisError

    try:
        yield
    except RedisError as exc:
        raise Unavailable(f"{what} unreachable: Redis {type(exc).__name__}: {exc}; check [state] url") from exc
