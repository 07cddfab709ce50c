"""Two gateway replicas on one Redis, and Redis restarted under load.

Both replicas serve a steady mixed load (local answers through the shared
cache, and requests tagged route=remote that need the shared ledger and the
OpenAI stand-in) while Redis is stopped and started again on the same folder
(append-only file on, as docs/operations.md recommends). As documented there
("Faults"):

- while Redis is down, a request that needs a provider fails fast with
  UNAVAILABLE naming the store; local answers keep flowing (the cache is a miss);
- nothing runs into its deadline;
- once Redis is back both replicas answer remote requests again by themselves;
- the ledger is consistent: its totals are the sum of its entries, every call
  the stand-in received has an entry, nothing spent before the restart is
  forgotten, and entries a lost reconcile left open expire at their estimate.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from gateway.state.redis_client import open_redis
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Fault
from tests.fakes.openai_fake import CountingOpenAI
from tests.fakes.providers import TEST_KEYS, base_url
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, free_port, start_gateway
from tests.redis_server import launch_redis, stop_redis
from tests.waiting import wait_until_async

DEADLINE_S = 3.0
EXPIRY_S = 2.0  # [budget] reservation_expiry_s (the provider answers in 0.2 s)
WORKERS = 8

CONFIG = """
[server]
default_max_tokens = 8

[local]
backend = "echo"

[budget]
reservation_expiry_s = {expiry_s}

[routing]
escalation_order = ["openai"]

[[routing.rules]]
match_tag = {{ route = "remote" }}
escalate = true

[providers.openai]
model = "gpt-test"
base_url = "{openai}"
daily_token_budget = 10000000
max_retries = 0
timeout_s = 10

[state]
backend = "redis"
url = "{redis_url}"
key_prefix = "{prefix}"
"""


@dataclass(frozen=True)
class Outcome:
    replica: int
    remote: bool
    started: float
    took: float
    code: grpc.StatusCode
    details: str
    response: pb.GenerateResponse | None


@dataclass
class Load:
    targets: list[str]
    outcomes: list[Outcome] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        channels = [grpc.aio.insecure_channel(t) for t in self.targets]
        try:
            await asyncio.gather(
                *(self._worker([pb_grpc.InferenceGatewayStub(c) for c in channels], n) for n in range(WORKERS))
            )
        finally:
            for channel in channels:
                await channel.close()

    def since(self, moment: float, *, remote: bool) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.started >= moment and o.remote == remote]

    async def _worker(self, stubs: list[pb_grpc.InferenceGatewayStub], n: int) -> None:
        remote = n % 2 == 1
        for i in itertools.count():
            if self.stopping.is_set():
                return
            replica = (n // 2 + i) % len(stubs)
            text = f"worker {n} {uuid.uuid4().hex}" if remote else f"worker {n} question {i % 5}"  # local: cache hits
            request = pb.GenerateRequest(
                messages=[pb.ChatMessage(role="user", content=text)], tags={"route": "remote"} if remote else {}
            )
            started = time.monotonic()
            try:
                response = await stubs[replica].Generate(request, timeout=DEADLINE_S)
                code, details = grpc.StatusCode.OK, ""
            except grpc.aio.AioRpcError as exc:
                response, code, details = None, exc.code(), exc.details() or ""
            self.outcomes.append(Outcome(replica, remote, started, time.monotonic() - started, code, details, response))
            if response is None:
                await asyncio.sleep(0.05)  # pacing: a worker refused at once does not spin


@pytest.fixture
def openai() -> Iterator[CountingOpenAI]:
    fake = CountingOpenAI()
    fake.always(Fault(delay_s=0.2))
    with serving_in_thread(fake):
        yield fake


async def ledger_state(url: str, prefix: str) -> tuple[dict[str, int], list[int], list[str]]:
    """(totals, the tokens of each entry, the entries still open) for today, read straight from Redis."""
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    client = open_redis(url)
    try:
        totals = {k.decode(): int(v) for k, v in (await client.hgetall(f"{prefix}ledger:{day}")).items()}
        entries = [int(v) for v in (await client.hvals(f"{prefix}ledger:{day}:res"))]
        still_open = [m.decode() for m in await client.zrange(f"{prefix}ledger:open", 0, -1)]
        return totals, entries, still_open
    finally:
        await client.aclose()


async def test_redis_restarted_under_load(openai: CountingOpenAI, tmp_path: Path) -> None:
    redis_dir = tmp_path / "redis"
    redis_dir.mkdir()
    port = free_port()
    url, prefix = f"redis://127.0.0.1:{port}/0", f"restart-{uuid.uuid4().hex[:8]}:"
    redis = await asyncio.to_thread(launch_redis, redis_dir, port, persistent=True)
    config = CONFIG.format(openai=base_url(openai), expiry_s=EXPIRY_S, redis_url=url, prefix=prefix)

    def start(name: str) -> GatewayProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        return start_gateway(config, workdir, env=TEST_KEYS, ready_timeout_s=60)

    replicas: list[GatewayProcess] = []
    load: Load | None = None
    running: asyncio.Future[None] | None = None
    try:
        replicas = list(await asyncio.gather(*(asyncio.to_thread(start, f"replica{i}") for i in range(2))))
        load = Load([g.target for g in replicas])
        running = asyncio.ensure_future(load.run())
        await wait_until_async(
            lambda: len([o for o in load.since(0, remote=True) if o.response]) >= 10,
            timeout_s=30,
            what="10 remote answers",
        )
        spent_before, _, _ = await ledger_state(url, prefix)

        # Redis goes away.
        await asyncio.to_thread(stop_redis, redis)
        down = time.monotonic()
        await wait_until_async(
            lambda: len(load.since(down + 0.3, remote=True)) >= 6 and len(load.since(down + 0.3, remote=False)) >= 6,
            timeout_s=20,
            what="remote and local requests while Redis is down",
        )
        up_at = time.monotonic()
        redis = await asyncio.to_thread(launch_redis, redis_dir, port, persistent=True)

        # Both replicas recover by themselves.
        up = time.monotonic()
        await wait_until_async(
            lambda: {o.replica for o in load.since(up, remote=True) if o.response is not None} == {0, 1},
            timeout_s=15,
            what="both replicas answering remote requests after Redis is back",
        )
        load.stopping.set()
        await running

        outcomes = load.outcomes
        assert {o.code for o in outcomes} <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, {
            o.code for o in outcomes
        }
        assert max(o.took for o in outcomes) < DEADLINE_S  # nothing ran into its deadline
        local = [o for o in outcomes if not o.remote]
        assert all(o.response is not None and o.response.tier in (pb.TIER_LOCAL, pb.TIER_CACHE) for o in local)
        outage = [o for o in outcomes if o.remote and o.started >= down + 0.3 and o.started + o.took < up_at]
        assert outage and all(o.code == grpc.StatusCode.UNAVAILABLE for o in outage)
        assert all("unreachable" in o.details for o in outage), {o.details for o in outage}
        assert max(o.took for o in outage) < 1.0  # refused fast, not after a wait

        # The ledger: totals agree with the entries, every call has one, the spend before the restart is kept.
        totals, entries, _ = await ledger_state(url, prefix)
        assert totals["tokens:openai"] == sum(entries) and totals["requests:openai"] == len(entries)
        assert totals["tokens:openai"] >= spent_before["tokens:openai"]
        assert openai.requests <= len(entries)  # nothing reached the provider without a reservation
        answered = [o.response for o in outcomes if o.remote and o.response is not None]
        assert len(answered) <= len(openai.served)

        # Entries whose reconcile was lost while Redis was down expire at their estimate, counted once.
        async def nothing_open() -> bool:
            return not (await ledger_state(url, prefix))[2]

        await wait_until_async(nothing_open, timeout_s=EXPIRY_S * 1.25 + 5, what="open entries to expire")
        assert (await ledger_state(url, prefix))[0] == totals
        async with grpc.aio.insecure_channel(replicas[1].target) as channel:
            usage = await pb_grpc.InferenceGatewayStub(channel).GetUsage(pb.GetUsageRequest(), timeout=10)
        row = next(p for p in usage.providers if p.provider == "openai")
        assert (row.tokens_used, row.requests) == (totals["tokens:openai"], totals["requests:openai"])
    finally:
        if load is not None:
            load.stopping.set()
        if running is not None:
            await asyncio.gather(running, return_exceptions=True)
        for gateway in replicas:
            gateway.stop()
        stop_redis(redis)
