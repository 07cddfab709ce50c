"""Escalation end to end: gRPC client -> gateway process (real model) -> provider stand-ins via the SDKs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer, Fault
from tests.fakes.providers import TEST_KEYS, base_url, running
from tests.gateway_process import GatewayProcess, start_gateway


def ask(content: str, **fields: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=content)], **fields)  # type: ignore[arg-type]


def config(fakes: dict[str, FakeProviderServer], *, local: str = "", offline: bool = False) -> str:
    return f"""
offline = {str(offline).lower()}
{local}
[routing]
escalation_order = ["openai", "anthropic"]

[[routing.rules]]
match_task = "detailed_analysis"
prefer = ["anthropic"]
escalate = true

[[routing.rules]]
match_tag = {{ desk = "private" }}
local_only = true

[tasks.yesno]
labels = ["yes", "no"]
system_prompt = "Answer with one word: yes or no."
learn = true

[tasks.detailed_analysis]

[providers.openai]
model = "gpt-test"
base_url = "{base_url(fakes["openai"])}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 15000
max_retries = 0

[providers.anthropic]
model = "claude-test"
base_url = "{base_url(fakes["anthropic"])}"
api_key_env = "ANTHROPIC_API_KEY"
daily_token_budget = 20000
"""


@pytest.fixture
async def fakes() -> AsyncIterator[dict[str, FakeProviderServer]]:
    async with running("openai", "anthropic") as started:
        yield started


async def start(text: str, workdir: Path) -> GatewayProcess:
    return await asyncio.to_thread(start_gateway, text, workdir, env=TEST_KEYS)


async def test_every_escalation_path_over_grpc(fakes: dict[str, FakeProviderServer], tmp_path: Path) -> None:
    gateway = await start(config(fakes), tmp_path)
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)

            low = await stub.Generate(ask("Is water wet?", task="yesno", max_tokens=3, min_confidence=1.0), timeout=120)
            assert (low.tier, low.provider, low.escalation) == (pb.TIER_REMOTE, "openai", pb.ESCALATION_LOW_CONFIDENCE)
            assert low.text == fakes["openai"].reply.text
            assert low.HasField("confidence") and low.confidence < 1.0  # the local answer's confidence
            assert [(a.provider, a.outcome) for a in low.attempts] == [
                ("transformers", "low_confidence"),
                ("openai", "ok"),
            ]
            assert low.usage.completion_tokens > 0

            private = await stub.Generate(
                ask("Is water wet?", task="yesno", max_tokens=3, min_confidence=1.0, privacy=pb.PRIVACY_LOCAL_ONLY),
                timeout=120,
            )
            assert private.tier == pb.TIER_LOCAL and private.escalation == pb.ESCALATION_NONE
            assert fakes["openai"].requests == 1 and fakes["anthropic"].requests == 0

            rule = await stub.Generate(ask("Analyse NVDA.", task="detailed_analysis", max_tokens=8), timeout=60)
            assert (rule.tier, rule.provider, rule.escalation) == (pb.TIER_REMOTE, "anthropic", pb.ESCALATION_RULE)
            assert [a.provider for a in rule.attempts] == ["anthropic"]

            pinned = await stub.Generate(ask("Hi", model="openai/gpt-test", max_tokens=8), timeout=60)
            assert (pinned.tier, pinned.provider, pinned.escalation) == (pb.TIER_REMOTE, "openai", pb.ESCALATION_NONE)

            # a remote pin on a local-only request is the client's mistake, whichever rule makes it local-only
            for local_only in ({"privacy": pb.PRIVACY_LOCAL_ONLY}, {"tags": {"desk": "private"}}):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await stub.Generate(ask("Hi", model="openai/gpt-test", **local_only), timeout=30)
                assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "is remote but the request is local-only" in (refused.value.details() or "")

            chunks = [c async for c in stub.GenerateStream(ask("Hi", model="anthropic/claude-test"), timeout=60)]
            assert "".join(c.text for c in chunks[:-1]) == chunks[-1].final.text == fakes["anthropic"].reply.text

            fakes["openai"].always(Fault(status=500))
            failover = await stub.Generate(
                ask("Is fire hot?", task="yesno", max_tokens=3, min_confidence=1.0), timeout=120
            )
            assert failover.provider == "anthropic"
            assert [a.outcome for a in failover.attempts][-1] == "ok"
            assert any(a.provider == "openai" and a.error for a in failover.attempts)

            usage = await stub.GetUsage(pb.GetUsageRequest(), timeout=10)
            by_name = {p.provider: p for p in usage.providers}
            assert by_name["openai"].token_budget == 15000 and by_name["anthropic"].token_budget == 20000
            assert by_name["openai"].tokens_used > 0 and by_name["anthropic"].tokens_used > 0
            assert usage.escalations_by_reason["low_confidence"] >= 2 and usage.escalations_by_reason["rule"] == 1

            models = await stub.ListModels(pb.ListModelsRequest(), timeout=10)
            assert {("openai", pb.TIER_REMOTE), ("anthropic", pb.TIER_REMOTE)} <= {
                (m.provider, m.tier) for m in models.models
            }
    finally:
        await asyncio.to_thread(gateway.stop)
    # the learning task kept its two escalations (not the LOCAL_ONLY one); the drain wrote them out
    rows = [json.loads(line) for line in (await learn_export(tmp_path, "yesno")).splitlines()]
    assert [row["messages"][-1]["content"] for row in rows] == ["Is water wet?", "Is fire hot?"]
    assert [row["provider"] for row in rows] == ["openai", "anthropic"]
    assert rows[0]["messages"][0] == {"role": "system", "content": "Answer with one word: yes or no."}


async def learn_export(workdir: Path, task: str) -> str:
    """`python -m gateway learn export` over the training rows the gateway in `workdir` kept."""
    env = {**os.environ, "GATEWAY__LEARNING__PATH": json.dumps(str(workdir / "learning.sqlite3"))}
    command = [sys.executable, "-m", "gateway", "learn", "export", "--task", task]
    command += ["--config", str(workdir / "gateway.toml")]
    done = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_offline_never_calls_a_provider_under_any_fault(
    fakes: dict[str, FakeProviderServer], tmp_path: Path
) -> None:
    for fake in fakes.values():
        fake.always(Fault(status=500))
    echo = '[local]\nbackend = "echo"\n'
    gateway = await start(config(fakes, local=echo, offline=True), tmp_path)
    try:
        async with grpc.aio.insecure_channel(gateway.target) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            answer = await stub.Generate(ask("buy 100 AAPL", task="detailed_analysis"), timeout=30)
            assert answer.tier == pb.TIER_LOCAL and answer.text == "buy 100 AAPL"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Generate(ask("Hi", model="openai/gpt-test"), timeout=30)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await asyncio.to_thread(gateway.stop)
    assert [fake.requests for fake in fakes.values()] == [0, 0]
