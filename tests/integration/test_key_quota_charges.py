"""An API key's daily tokens are charged as the providers' budgets are, over real gRPC.

A gateway process with keys, the echo backend and the OpenAI stand-in. Each
case reads what the gateway wrote, as data: the provider ledger and the
key-quota ledger (`token_reservations`: tokens, settled 0 open / 1 settled).

- a stream the client drops after its first piece: the provider is charged its
  estimate (it may run the whole reply), and so is the key;
- a call the client cancels while the provider works: the same;
- a hedged URGENT request whose local answer wins: the key pays the local answer
  and the provider try the hedge sent and cancelled, as the provider budget does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Fault
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, keys_cli, keys_file, start_gateway
from tests.waiting import wait_until_async

NAMES = ("streamer", "canceller", "hedger")


def config(state_dir: Path, openai: FakeOpenAI) -> str:
    return f"""
state_dir = "{state_dir}"
[local]
backend = "echo"
[local.echo]
delay_ms = 400
[keys]
refresh_s = 0.2
[cache]
enabled = false
[routing]
escalation_order = ["openai"]
hedge_after_ms = 20
[[routing.rules]]
match_task = "research"
escalate = true
[tasks.research]
[providers.openai]
model = "gpt-test"
base_url = "{openai.base_url}"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
"""


@dataclass(frozen=True)
class Row:
    id: int
    tokens: int
    settled: int


@dataclass
class Metered:
    gateway: GatewayProcess
    openai: FakeOpenAI
    keys: dict[str, str]
    state_dir: Path
    workdir: Path

    def rows(self, ledger: str, name: str) -> list[Row]:
        path = self.state_dir / "key_quotas.sqlite3" if ledger == "keys" else self.workdir / "budget.sqlite3"
        with sqlite3.connect(path) as db:
            found = db.execute(
                "SELECT id, tokens, settled FROM token_reservations WHERE provider = ? ORDER BY id", (name,)
            ).fetchall()
        return [Row(*row) for row in found]

    def metadata(self, name: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[name]}"),)

    async def settled(self, ledger: str, name: str, after: int = 0) -> Row:
        """The newest row of `name` (past id `after`) once it is settled; fails when there is none."""

        def newest() -> Row | None:
            rows = [row for row in self.rows(ledger, name) if row.id > after and row.settled]
            return rows[-1] if rows else None

        row = await wait_until_async(newest, timeout_s=20, what=f"a settled {ledger} row for {name}")
        assert row is not None
        return row


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    workdir = tmp_path_factory.mktemp("key-quota-charges")
    with serving_in_thread(FakeOpenAI()) as openai:
        assert isinstance(openai, FakeOpenAI)
        text = config(workdir / "state", openai)
        (workdir / "keys.toml").write_text(text)
        keys = {name: keys_cli(workdir / "keys.toml", "create", name, "--daily-tokens", "100000") for name in NAMES}
        gateway = start_gateway(text, workdir, env={**TEST_KEYS, **keys_file(workdir / "state")})
        try:
            yield Metered(gateway, openai, keys, workdir / "state", workdir)
        finally:
            gateway.stop()


def ask(content: str, **fields: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=content)], max_tokens=8, **fields)  # type: ignore[arg-type]


async def test_a_stream_dropped_after_its_first_piece_is_charged_its_estimate(metered: Metered) -> None:
    metered.openai.fail(Fault(stall_after_frames=2))  # one piece, then nothing until the caller hangs up
    provider_before = max((row.id for row in metered.rows("provider", "openai")), default=0)
    async with grpc.aio.insecure_channel(metered.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        call = stub.GenerateStream(ask("what moved the market", task="research"), metadata=metered.metadata("streamer"))
        first = await call.read()
        assert isinstance(first, pb.GenerateChunk) and first.text
        call.cancel()
    provider = await metered.settled("provider", "openai", after=provider_before)
    [reserved] = metered.rows("keys", "streamer")
    key = await metered.settled("keys", "streamer")
    assert provider.tokens > 0 and key.tokens == reserved.tokens > 0  # both at their estimate: usage unknown


async def test_a_call_cancelled_while_the_provider_works_is_charged_its_estimate(metered: Metered) -> None:
    metered.openai.fail(Fault(delay_s=30))
    seen = metered.openai.requests
    async with grpc.aio.insecure_channel(metered.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        call = stub.Generate(ask("what moved the market", task="research"), metadata=metered.metadata("canceller"))
        await wait_until_async(lambda: metered.openai.requests > seen, timeout_s=20, what="the call at the provider")
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    key = await metered.settled("keys", "canceller")
    assert key.tokens > 0  # the provider may bill the whole reply: so does the key


async def test_a_hedge_that_lost_is_charged_to_the_key_as_to_the_provider(metered: Metered) -> None:
    metered.openai.fail(Fault(delay_s=30))  # the provider side of the race never answers in time
    seen = metered.openai.requests
    provider_before = max((row.id for row in metered.rows("provider", "openai")), default=0)
    async with grpc.aio.insecure_channel(metered.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        answer = await stub.Generate(
            ask("up and away", priority=pb.PRIORITY_URGENT), metadata=metered.metadata("hedger"), timeout=30
        )
    assert answer.tier == pb.TIER_LOCAL and metered.openai.requests == seen + 1  # hedged, and the local side won
    assert [a.outcome for a in answer.attempts] == ["ok", "cancelled"]
    provider = await metered.settled("provider", "openai", after=provider_before)
    key = await metered.settled("keys", "hedger")
    local = answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert provider.tokens > 0 and key.tokens == local + provider.tokens
