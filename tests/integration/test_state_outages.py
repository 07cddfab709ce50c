"""Shared state that fails mid-request keeps the books straight, over real gRPC.

One gateway process (tests/faulty_state_gateway.py: the real server over its
SQLite stores, each store failing with UNAVAILABLE on cue) goes through an outage
at each step of a metered request: the key's quota and rate limit, the provider
ledger's reserve, the provider's rate limit, the provider call itself, the
provider ledger's reconcile, the breaker after a good answer, and the key's
quota reconcile and release. After each step the ledgers are read as data:

- an answer a provider gave (and billed) always reaches the client;
- a request the outage stopped gets a clean UNAVAILABLE, or the local answer
  when it had one, and leaves no reservation behind it: what was reserved before
  the failing step is released, and a settlement that could not be written
  expires at its estimate (`[budget] reservation_expiry_s`), never stays open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Fault, Reply
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, keys_cli, keys_file, start_gateway
from tests.waiting import wait_until

ESCALATED = ("research", "what moved the market")  # a rule sends it to the provider at once: no local answer
FALLBACK = ("trend", "sideways drift")  # confidence 0 locally: escalates, and keeps the local answer to fall back on


def config(state_dir: Path, openai: FakeOpenAI) -> str:
    return f"""
state_dir = "{state_dir}"
[local]
backend = "echo"
[keys]
refresh_s = 0.2
[cache]
enabled = false
[budget]
reservation_expiry_s = 1.0
[routing]
escalation_order = ["openai"]
breaker_failures = 100
[[routing.rules]]
match_task = "research"
escalate = true
[tasks.research]
[tasks.trend]
labels = ["up", "down"]
[providers.openai]
model = "gpt-test"
base_url = "{openai.base_url}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 1000000
max_retries = 0
"""


@dataclass(frozen=True)
class Row:
    id: int
    tokens: int
    settled: int  # 0 open, 1 settled, 2 expired open (counted at its estimate)


@dataclass
class Outages:
    gateway: GatewayProcess
    openai: FakeOpenAI
    key: str
    faults: Path
    workdir: Path

    def ask(self, task_and_text: tuple[str, str]) -> tuple[grpc.StatusCode, str, str]:
        """(code, tier, details) of one metered Generate call."""
        task, text = task_and_text
        request = pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=text)], max_tokens=8, task=task)
        with grpc.insecure_channel(self.gateway.target) as channel:
            try:
                reply = pb_grpc.InferenceGatewayStub(channel).Generate(
                    request, metadata=(("authorization", f"Bearer {self.key}"),), timeout=30
                )
            except grpc.RpcError as exc:
                return exc.code(), "", exc.details() or ""  # type: ignore[attr-defined]
        return grpc.StatusCode.OK, pb.Tier.Name(reply.tier), ""

    def rows(self, ledger: str) -> list[Row]:
        path = self.workdir / ("state/key_quotas.sqlite3" if ledger == "key" else "budget.sqlite3")
        if not path.exists():
            return []
        with sqlite3.connect(path) as db:
            return [Row(*r) for r in db.execute("SELECT id, tokens, settled FROM token_reservations ORDER BY id")]

    def newest(self, ledger: str) -> int:
        return max((row.id for row in self.rows(ledger)), default=0)

    def none_open(self) -> bool:
        return not any(row.settled == 0 for ledger in ("key", "provider") for row in self.rows(ledger))


@pytest.fixture(scope="module")
def outages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outages]:
    workdir = tmp_path_factory.mktemp("state-outages")
    faults = workdir / "faults"
    with serving_in_thread(FakeOpenAI(reply=Reply("down"))) as openai:
        assert isinstance(openai, FakeOpenAI)
        text = config(workdir / "state", openai)
        (workdir / "keys.toml").write_text(text)
        key = keys_cli(workdir / "keys.toml", "create", "desk", "--daily-tokens", "1000000", "--rpm", "1000")
        env = {**TEST_KEYS, **keys_file(workdir / "state"), "GATEWAY_TEST_FAULTS": str(faults)}
        gateway = start_gateway(text, workdir, env=env, entry=("-m", "tests.faulty_state_gateway"))
        try:
            yield Outages(gateway, openai, key, faults, workdir)
        finally:
            faults.write_text("")
            gateway.stop()


@dataclass(frozen=True)
class Step:
    faults: str  # lines of tests/faulty_state_gateway.py
    request: tuple[str, str]
    answer: tuple[grpc.StatusCode, str]  # code, tier
    provider_rows: int  # new rows in the provider ledger (0: nothing reserved, or released)
    key_rows: int  # new rows in the key-quota ledger
    provider_fault: Fault | None = None


STEPS = {
    "key quota reserve": Step("key_quotas.reserve", ESCALATED, (grpc.StatusCode.UNAVAILABLE, ""), 0, 0),
    "key rate limit": Step("rate_limits.try_acquire:key:", ESCALATED, (grpc.StatusCode.UNAVAILABLE, ""), 0, 0),
    "provider ledger reserve, nothing to fall back on": Step(
        "ledger.reserve", ESCALATED, (grpc.StatusCode.UNAVAILABLE, ""), 0, 0
    ),
    "provider ledger reserve, a local answer": Step(
        "ledger.reserve", FALLBACK, (grpc.StatusCode.OK, "TIER_LOCAL"), 0, 1
    ),
    "provider rate limit, nothing to fall back on": Step(
        "rate_limits.try_acquire:openai", ESCALATED, (grpc.StatusCode.UNAVAILABLE, ""), 0, 0
    ),
    "provider rate limit, a local answer": Step(
        "rate_limits.try_acquire:openai", FALLBACK, (grpc.StatusCode.OK, "TIER_LOCAL"), 0, 1
    ),
    "provider call fails, a local answer": Step(
        "", FALLBACK, (grpc.StatusCode.OK, "TIER_LOCAL"), 0, 1, provider_fault=Fault(status=500)
    ),
    "provider call cut off mid-body": Step(
        "", ESCALATED, (grpc.StatusCode.UNAVAILABLE, ""), 1, 1, provider_fault=Fault(reset_mid_body=True)
    ),
    "provider ledger reconcile": Step("ledger.reconcile", ESCALATED, (grpc.StatusCode.OK, "TIER_REMOTE"), 1, 1),
    "breaker after a good answer": Step(
        "breakers.record_success", ESCALATED, (grpc.StatusCode.OK, "TIER_REMOTE"), 1, 1
    ),
    "key quota reconcile": Step("key_quotas.reconcile", ESCALATED, (grpc.StatusCode.OK, "TIER_REMOTE"), 1, 1),
    "key quota release after a failure": Step(
        "ledger.reserve\nkey_quotas.release", ESCALATED, (grpc.StatusCode.UNAVAILABLE, ""), 0, 1
    ),
}


@pytest.mark.parametrize("name", list(STEPS))
def test_an_outage_at_each_step_keeps_the_books_straight(outages: Outages, name: str) -> None:
    step = STEPS[name]
    provider_before, key_before = outages.newest("provider"), outages.newest("key")
    outages.faults.write_text(step.faults)
    if step.provider_fault is not None:
        outages.openai.fail(step.provider_fault)
    try:
        code, tier, details = outages.ask(step.request)
    finally:
        outages.faults.write_text("")
    assert (code, tier) == step.answer, details
    if code is grpc.StatusCode.UNAVAILABLE:
        assert "unreachable" in details or "openai" in details  # the outage or the provider, named
    wait_until(outages.none_open, timeout_s=20, what="every reservation settled, released or expired")
    new_provider = [row for row in outages.rows("provider") if row.id > provider_before]
    new_key = [row for row in outages.rows("key") if row.id > key_before]
    assert (len(new_provider), len(new_key)) == (step.provider_rows, step.key_rows)
