"""A local-only API key's prompts stay on the box end to end: no escalation, and no live audit either.

A gateway process with API keys, a learning task with `audit_rate = 1` and the
OpenAI stand-in: a confident local answer of a plain key is audited (the
stand-in sees its prompt), the same question from a `--local-only` key is not,
and neither is one that a `local_only` rule keeps on the box. The audits are
observed through the stand-in and the gateway's own audit gauge.
"""

from __future__ import annotations

import re
import sqlite3
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Reply
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, keys_cli, keys_file, start_gateway
from tests.waiting import wait_until


def config(state_dir: Path, openai: FakeOpenAI) -> str:
    return f"""
state_dir = "{state_dir}"
[local]
backend = "echo"
[keys]
refresh_s = 0.2
[cache]
enabled = false
[routing]
escalation_order = ["openai"]
[[routing.rules]]
match_tag = {{ desk = "private" }}
local_only = true
[tasks.trend]
labels = ["up", "down"]
learn = true
[learning]
audit_rate = 1.0
audit_budget_share = 1.0
[providers.openai]
model = "gpt-test"
base_url = "{openai.base_url}"
api_key_env = "OPENAI_API_KEY"
daily_token_budget = 100000
max_retries = 0
"""


@dataclass
class Audited:
    gateway: GatewayProcess
    openai: FakeOpenAI
    keys: dict[str, str]
    workdir: Path

    def ask(self, key: str, marker: str, **tags: str) -> pb.GenerateResponse:
        """A trend question the echo backend answers "up" with full confidence (kept locally: audited)."""
        request = pb.GenerateRequest(
            messages=[pb.ChatMessage(role="user", content=f"up {marker}")], max_tokens=4, task="trend", tags=tags
        )
        with grpc.insecure_channel(self.gateway.target) as channel:
            reply: pb.GenerateResponse = pb_grpc.InferenceGatewayStub(channel).Generate(
                request, metadata=(("authorization", f"Bearer {self.keys[key]}"),), timeout=30
            )
        return reply

    def seen_by_provider(self, marker: str) -> bool:
        return any(marker in str(seen.body) for seen in list(self.openai.seen))

    def audits(self) -> float:
        body = urllib.request.urlopen(f"{self.gateway.http_url}/metrics", timeout=5).read().decode()
        match = re.search(r'^gateway_local_audits\{task="trend"\} (\S+)$', body, re.MULTILINE)
        return float(match.group(1)) if match else 0.0


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    workdir = tmp_path_factory.mktemp("local-only-audit")
    with serving_in_thread(FakeOpenAI(reply=Reply("up"))) as openai:  # a label: the audit can judge it
        assert isinstance(openai, FakeOpenAI)
        text = config(workdir / "state", openai)
        (workdir / "keys.toml").write_text(text)
        keys = {
            "desk": keys_cli(workdir / "keys.toml", "create", "desk"),
            "private": keys_cli(workdir / "keys.toml", "create", "private", "--local-only"),
        }
        gateway = start_gateway(text, workdir, env={**TEST_KEYS, **keys_file(workdir / "state")})
        try:
            yield Audited(gateway, openai, keys, workdir)
        finally:
            gateway.stop()
    log = gateway.log_text()
    assert "-prompt-" not in log, "prompt text in the gateway's log"


def test_a_local_only_keys_confident_answer_is_never_audited(audited: Audited) -> None:
    kept = audited.ask("private", "private-prompt-7f3a")
    assert (kept.tier, kept.escalation, kept.confidence) == (pb.TIER_LOCAL, pb.ESCALATION_NONE, 1.0)
    control = audited.ask("desk", "desk-prompt-91c2")  # the same kind of answer from a plain key: audited
    assert control.tier == pb.TIER_LOCAL
    wait_until(lambda: audited.seen_by_provider("desk-prompt-91c2"), timeout_s=30, what="the plain key's audit")
    wait_until(lambda: audited.audits() >= 1, timeout_s=30, what="the audit to be counted")
    assert not audited.seen_by_provider("private-prompt-7f3a")  # its audit would have started first
    assert audited.audits() == 1
    with sqlite3.connect(audited.workdir / "learning.sqlite3") as db:  # training rows, read as data
        rows = [raw for (raw,) in db.execute("SELECT row FROM training_rows")]
    assert not any("private-prompt-7f3a" in row for row in rows)


def test_a_request_a_local_only_rule_keeps_on_the_box_is_never_audited(audited: Audited) -> None:
    before = audited.audits()
    kept = audited.ask("desk", "ruled-prompt-55d0", desk="private")
    assert kept.tier == pb.TIER_LOCAL
    control = audited.ask("desk", "desk-prompt-0b7e")
    assert control.tier == pb.TIER_LOCAL
    wait_until(lambda: audited.seen_by_provider("desk-prompt-0b7e"), timeout_s=30, what="the plain request's audit")
    wait_until(lambda: audited.audits() >= before + 1, timeout_s=30, what="the audit to be counted")
    assert not audited.seen_by_provider("ruled-prompt-55d0")
