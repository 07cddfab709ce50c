"""Fixtures shared across test folders."""

from tests.redis_server import redis_client, redis_prefix, redis_server

__all__ = ["redis_client", "redis_prefix", "redis_server"]
