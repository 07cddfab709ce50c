"""`kill -9` of a gateway under load, then a restart on the same state files.

One gateway (echo backend locally, the OpenAI stand-in for requests tagged
route=remote) serves a steady mixed load; GetUsage writes out the usage
records queued so far (the point at which a record counts as committed); more
load follows and the process is killed with SIGKILL while calls wait at the
provider. A new process on the same ledger and usage files then shows:

- every answer committed before the kill has exactly one usage record; none is
  written twice; records exist only for requests that were sent;
- every call the stand-in received has one ledger entry (a reservation comes
  before its call, so the kill may leave one without a call, never a call
  twice); each reconciled answer is at the tokens the stand-in reported; the
  calls cut off by the kill keep their estimate and expire (settled at it)
  within the reservation expiry;
- the totals the budget check reads agree with the entries, and the new
  process answers local and remote requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Fault
from tests.fakes.openai_fake import CountingOpenAI
from tests.fakes.providers import TEST_KEYS, base_url
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, start_gateway
from tests.waiting import wait_until, wait_until_async

EXPIRY_S = 2.0  # [budget] reservation_expiry_s: longer than any call here (the provider answers in 0.3 s)
PROVIDER_DELAY_S = 0.3
CONCURRENCY = 12

CONFIG = """
[server]
default_max_tokens = 8

[local]
backend = "echo"

[cache]
enabled = false

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
"""


@dataclass
class Load:
    """A steady stream of requests, half of them remote, CONCURRENCY at a time, until stopped."""

    target: str
    sent: set[str] = field(default_factory=set)
    answered: dict[str, pb.GenerateResponse] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def remote(self) -> int:
        return sum(r.tier == pb.TIER_REMOTE for r in list(self.answered.values()))

    async def run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            await asyncio.gather(*(self._worker(stub, n) for n in range(CONCURRENCY)))

    async def _worker(self, stub: pb_grpc.InferenceGatewayStub, n: int) -> None:
        while not self.stopping.is_set():
            request_id = uuid.uuid4().hex
            self.sent.add(request_id)
            request = pb.GenerateRequest(
                request_id=request_id,
                messages=[pb.ChatMessage(role="user", content=f"worker {n:02d}: is the trend up")],
                tags={"route": "remote"} if n % 2 else {},
            )
            try:
                self.answered[request_id] = await stub.Generate(request, timeout=10)
            except grpc.aio.AioRpcError:
                return  # the gateway is gone


@pytest.fixture(scope="module")
def openai() -> Iterator[CountingOpenAI]:
    fake = CountingOpenAI()
    fake.always(Fault(delay_s=PROVIDER_DELAY_S))
    with serving_in_thread(fake):
        yield fake


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


async def test_kill_9_under_load_loses_no_committed_record_and_counts_nothing_twice(
    openai: CountingOpenAI, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    ledger, usage = state / "budget.sqlite3", state / "usage.sqlite3"
    paths = {"GATEWAY__BUDGET__PATH": str(ledger), "GATEWAY__USAGE__PATH": str(usage)}
    config = CONFIG.format(openai=base_url(openai), expiry_s=EXPIRY_S)

    def start(name: str) -> GatewayProcess:
        workdir = tmp_path / name
        workdir.mkdir()
        return start_gateway(config, workdir, env={**TEST_KEYS, **paths}, ready_timeout_s=60)

    first = await asyncio.to_thread(start, "first")
    load = Load(first.target)
    running = asyncio.ensure_future(load.run())
    try:
        await wait_until_async(lambda: load.remote() >= 12, timeout_s=30, what="12 remote answers")
        async with grpc.aio.insecure_channel(first.target) as channel:  # writes out the records queued so far
            await pb_grpc.InferenceGatewayStub(channel).GetUsage(pb.GetUsageRequest(), timeout=10)
        committed = set(load.answered)
        remote_committed = load.remote()
        await wait_until_async(  # more load, with calls waiting at the provider when the kill comes
            lambda: load.remote() >= remote_committed + 12 and openai.requests > len(openai.served),
            timeout_s=30,
            what="12 more remote answers and a call waiting at the provider",
        )
        first.process.kill()
        assert await asyncio.to_thread(first.process.wait, 10) == -9
        load.stopping.set()
        await running
    finally:
        load.stopping.set()
        if first.process.poll() is None:
            first.process.kill()
        await asyncio.gather(running, return_exceptions=True)
    cut_off = openai.requests - len(openai.served)  # calls the stand-in received but had not answered

    # What the killed process left in the files.
    # Usage records: the committed ones all there, none twice, none for a request never sent.
    recorded = [r for (r,) in rows(usage, "SELECT request_id FROM usage_records")]
    assert len(recorded) == len(set(recorded)), "a usage record was written twice"
    assert committed <= set(recorded), f"committed records lost: {len(committed - set(recorded))}"
    assert set(recorded) <= load.sent

    # Ledger: one entry per call the stand-in received; answered calls at what it reported.
    entries = rows(ledger, "SELECT tokens, settled FROM token_reservations WHERE provider = 'openai'")
    reconciled = sorted(tokens for tokens, settled in entries if settled == 1)
    # a reservation comes before its call: the kill may fall between the two, never count a call twice
    assert openai.requests <= len(entries) <= openai.requests + CONCURRENCY // 2, (len(entries), openai.requests)
    remote_answers = [r for r in load.answered.values() if r.tier == pb.TIER_REMOTE]
    assert len(remote_answers) <= len(reconciled) <= len(openai.served)
    assert set(reconciled) <= set(openai.served)
    for answer in remote_answers:
        assert answer.usage.prompt_tokens + answer.usage.completion_tokens in reconciled
    open_entries = [tokens for tokens, settled in entries if settled == 0]
    assert len(entries) == len(reconciled) + len(open_entries)
    assert cut_off <= len(open_entries) <= cut_off + CONCURRENCY // 2  # cut off by the kill: estimate counted
    assert open_entries, "the kill came while no call was in flight"

    def total() -> tuple[int, int]:
        ((tokens, requests),) = rows(ledger, "SELECT tokens, requests FROM token_totals WHERE provider = 'openai'")
        return int(tokens), int(requests)

    before_expiry = total()
    assert before_expiry == (sum(t for t, _ in entries), len(entries))  # the totals the budget check reads

    second = await asyncio.to_thread(start, "second")
    try:
        # The new process expires them: settled at their estimate, counted once.
        wait_until(
            lambda: not rows(ledger, "SELECT 1 FROM token_reservations WHERE settled = 0"),
            timeout_s=EXPIRY_S * 1.25 + 5,
            what="the reservations left open by the kill to expire",
        )
        expired = rows(ledger, "SELECT COUNT(*) FROM token_reservations WHERE settled = 2")[0][0]
        assert expired == len(open_entries)
        assert total() == before_expiry
        second.wait_for_log("token reservations expired unsettled")

        # Serving again, remote and local; the ledger goes on from where it was.
        async with grpc.aio.insecure_channel(second.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            ask = [pb.ChatMessage(role="user", content="after the restart")]
            remote = await stub.Generate(pb.GenerateRequest(messages=ask, tags={"route": "remote"}), timeout=10)
            local = await stub.Generate(pb.GenerateRequest(messages=ask), timeout=10)
            usage_now = await stub.GetUsage(pb.GetUsageRequest(), timeout=10)
        assert (remote.tier, local.tier) == (pb.TIER_REMOTE, pb.TIER_LOCAL)
        spent = remote.usage.prompt_tokens + remote.usage.completion_tokens
        openai_row = next(p for p in usage_now.providers if p.provider == "openai")
        assert (openai_row.tokens_used, openai_row.requests) == (before_expiry[0] + spent, before_expiry[1] + 1)
    finally:
        second.stop()
