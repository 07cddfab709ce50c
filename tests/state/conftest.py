"""Fixtures the state suites share: where each backend keeps its state, and a clock the tests move.

A test that takes `where` runs once per backend: memory, SQLite and Redis. A
suite with other backends names them once, for all its tests:

    pytestmark = pytest.mark.parametrize("where", ["sqlite", "redis"], indirect=True)

Every name but "redis" gets a Site on the test's tmp_path; "redis" pulls in the
Redis fixtures (tests/redis_server.py), so only the Redis cases need, or skip
without, redis-server. A suite builds its own stores there and hands each to
`closing`, which closes them when the test ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.state.backends import Closer, Site, WallClock


@pytest.fixture(params=["memory", "sqlite", "redis"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> Site:
    backend: str = request.param
    if backend == "redis":
        return Site(backend, tmp_path, request.getfixturevalue("redis_client"), request.getfixturevalue("redis_prefix"))
    return Site(backend, tmp_path)


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
async def closing(where: Site) -> AsyncIterator[Closer]:
    """Closes the stores a test opened when it ends, before the backend they live on (`where`) goes."""
    closer = Closer()
    yield closer
    await closer.aclose()
