"""A running gateway keeps everything it writes to its owner: files 0600, folders 0700.

A gateway process, started under a umask that would let everyone read, with API
keys, the response cache, usage records with prompts, learning and the OpenAI
stand-in, answers a local and an escalated request over gRPC and stops; then
every file and folder under its state_dir is checked, and so is a training
export written by `gateway learn export --out`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import gateway_cli, keys_cli, start_gateway

# start_gateway points these at its workdir; "" puts them back in state_dir, where the gateway keeps them
IN_STATE_DIR = {f"GATEWAY__{section}__PATH": "" for section in ("BUDGET", "CACHE", "USAGE", "LEARNING", "KEYS")}


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask most systems start with (files 0644, folders 0755 unless the gateway says otherwise)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def config(state_dir: Path, openai: FakeOpenAI) -> str:
    return f"""
state_dir = "{state_dir}"
[local]
backend = "echo"
[usage]
record_prompts = true
[routing]
escalation_order = ["openai"]
[[routing.rules]]
match_task = "research"
escalate = true
[tasks.research]
learn = true
[providers.openai]
model = "gpt-test"
base_url = "{openai.base_url}"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
"""


def test_every_file_the_gateway_writes_is_owner_only(tmp_path: Path, open_umask: None) -> None:
    root = tmp_path / "private"  # missing: the gateway creates it and its state_dir
    state_dir = root / "state"
    with serving_in_thread(FakeOpenAI()) as openai:
        assert isinstance(openai, FakeOpenAI)
        text = config(state_dir, openai)
        (tmp_path / "keys.toml").write_text(text)
        key = keys_cli(tmp_path / "keys.toml", "create", "desk")
        gateway = start_gateway(text, tmp_path, env={**TEST_KEYS, **IN_STATE_DIR})
        try:
            with grpc.insecure_channel(gateway.target) as channel:
                stub = pb_grpc.InferenceGatewayStub(channel)
                for task in ("", "research"):
                    request = pb.GenerateRequest(
                        messages=[pb.ChatMessage(role="user", content="a prompt only its desk may read")],
                        max_tokens=8,
                        task=task,
                    )
                    stub.Generate(request, metadata=(("authorization", f"Bearer {key}"),), timeout=30)
        finally:
            assert gateway.stop() == 0  # drained: usage records and training rows written
    assert "a prompt only its desk may read" not in gateway.log_text()

    written = {"usage.sqlite3", "response_cache.sqlite3", "ledger.sqlite3", "training.sqlite3", "keys.sqlite3"}
    found = {path.relative_to(root): stat.S_IMODE(path.stat().st_mode) for path in root.rglob("*")}
    assert written <= {path.name for path in found}, sorted(map(str, found))
    loose = {str(p): oct(m) for p, m in found.items() if m != (0o700 if (root / p).is_dir() else 0o600)}
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and not loose, f"readable beyond the owner: {loose}"

    export = tmp_path / "exported" / "research.jsonl"
    export.parent.mkdir()
    gateway_cli("learn", "export", "--config", str(tmp_path / "keys.toml"), "--task", "research", "--out", str(export))
    assert "a prompt only its desk may read" in export.read_text()
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
