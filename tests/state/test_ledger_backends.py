"""The token ledger suite (tests/unit/test_budget.py, run there on SQLite and memory) run again on Redis.

Every test of that suite that takes the `ledger` fixture is collected here too,
with this module's fixture, so Redis passes exactly the same tests. The
cross-process tests below mirror the SQLite ones: separate ledgers and
separate processes sharing one Redis never pass the limit.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.state.budget.ledger import TokenLedger
from gateway.state.budget.redis import RedisLedger
from gateway.state.redis_client import open_redis
from tests.redis_server import RedisServer
from tests.unit import test_budget as suite

ROOT = str(Path(__file__).resolve().parents[2])
DAY = suite.DAY

for _name, _test in vars(suite).items():
    if _name.startswith("test_") and "ledger" in inspect.signature(_test).parameters:
        globals()[_name] = _test


@pytest.fixture
async def ledger(redis_client: Any, redis_prefix: str) -> AsyncIterator[TokenLedger]:
    made = RedisLedger(redis_client, prefix=redis_prefix)
    yield made
    await made.aclose()


async def test_two_ledgers_sharing_one_redis_never_pass_the_limit(redis_server: RedisServer, redis_prefix: str) -> None:
    clients = [open_redis(redis_server.url), open_redis(redis_server.url)]
    first, second = (RedisLedger(c, prefix=redis_prefix) for c in clients)
    try:
        calls = [(first if i % 2 else second).reserve("openai", 10, day=DAY, limit=1000) for i in range(300)]
        granted = [r for r in await asyncio.gather(*calls) if r is not None]
        assert len(granted) == 100
        assert (await second.usage(DAY))["openai"].tokens_used == 1000
    finally:
        for client in clients:
            await client.aclose()


RESERVE_SCRIPT = """
import asyncio, sys
from gateway.state.budget.redis import RedisLedger
from gateway.state.redis_client import open_redis

async def main():
    client = open_redis(sys.argv[1])
    ledger = RedisLedger(client, prefix=sys.argv[2])
    results = await asyncio.gather(*(ledger.reserve("openai", 10, day=sys.argv[3], limit=1000) for _ in range(150)))
    await client.aclose()
    print(sum(r is not None for r in results))

asyncio.run(main())
"""


async def test_separate_processes_sharing_one_redis_never_pass_the_limit(
    redis_server: RedisServer, redis_prefix: str, redis_client: Any
) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RESERVE_SCRIPT,
            redis_server.url,
            redis_prefix,
            DAY,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [await proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(int(out.decode()) for out, _ in outputs) == 100
    assert (await RedisLedger(redis_client, prefix=redis_prefix).usage(DAY))["openai"].tokens_used == 1000
