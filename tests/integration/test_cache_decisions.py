"""The response cache answers only requests that would have been decided the same way, by the same caller.

Gateway processes over gRPC, with the echo backend (a label answer is confident,
anything else has confidence 0), the Ollama stand-in where a confidence between
thresholds is needed, and the OpenAI stand-in as the provider:

- a tag that matched a `local_only` or `escalate` rule is part of the decision, so
  an untagged request never gets the answer made under the rule;
- the SQLite cache outlives a restart: answers made online are not served offline
  and the other way round, nor after the task's system prompt or the provider's
  model changed;
- a threshold the audit raises is in force for cached answers at once;
- entries are per API key unless `[cache] shared_across_keys = true`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Reply
from tests.fakes.ollama_server import BASE_MODEL, FakeOllama
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, keys_cli, keys_file, start_gateway

TIERS = {pb.TIER_LOCAL: "local", pb.TIER_REMOTE: "remote", pb.TIER_CACHE: "cache"}


ECHO = '[local]\nbackend = "echo"'
TREND = '[tasks.trend]\nlabels = ["up", "down"]\nsystem_prompt = "Answer up or down."'


def config(
    workdir: Path,
    openai: FakeOpenAI,
    *,
    offline: bool = False,
    model: str = "gpt-test",
    local: str = ECHO,
    task: str = TREND,
    extra: str = "",
) -> str:
    return f"""
offline = {str(offline).lower()}
state_dir = "{workdir / "state"}"
{local}
[keys]
refresh_s = 0.2
[routing]
escalation_order = ["openai"]
[[routing.rules]]
match_tag = {{ desk = "private" }}
local_only = true
[[routing.rules]]
match_tag = {{ route = "cloud" }}
escalate = true
{task}
[providers.openai]
model = "{model}"
base_url = "{openai.base_url}"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
{extra}
"""


def ask(gateway: GatewayProcess, content: str, *, key: str = "", task: str = "trend", **tags: str) -> tuple[str, str]:
    """(tier, text) of one Generate call."""
    request = pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=content)], max_tokens=4, task=task, tags=tags
    )
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.insecure_channel(gateway.target) as channel:
        reply = pb_grpc.InferenceGatewayStub(channel).Generate(request, metadata=metadata, timeout=30)
    return TIERS[reply.tier], reply.text


@pytest.fixture(scope="module")
def openai() -> Iterator[FakeOpenAI]:
    with serving_in_thread(FakeOpenAI(reply=Reply("down"))) as fake:
        assert isinstance(fake, FakeOpenAI)
        yield fake


@dataclass
class Running:
    gateway: GatewayProcess

    def __enter__(self) -> GatewayProcess:
        return self.gateway

    def __exit__(self, *exc: object) -> None:
        self.gateway.stop()


def running(text: str, workdir: Path, env: dict[str, str] | None = None) -> Running:
    return Running(start_gateway(text, workdir, env={**TEST_KEYS, **(env or {})}))


def test_an_answer_made_under_a_rule_never_answers_a_request_the_rule_does_not_match(
    openai: FakeOpenAI, tmp_path: Path
) -> None:
    with running(config(tmp_path, openai), tmp_path) as gateway:
        # kept locally at confidence 0 only because the rule forbids escalating
        assert ask(gateway, "sideways one", desk="private") == ("local", "sideways one")
        assert ask(gateway, "sideways one") == ("remote", "down")  # untagged: it escalates
        assert ask(gateway, "sideways one") == ("cache", "down")
        assert ask(gateway, "sideways one", desk="private") == ("local", "sideways one")  # not the provider's answer

        assert ask(gateway, "up two", route="cloud") == ("remote", "down")  # the rule escalates at once
        assert ask(gateway, "up two") == ("local", "up two")  # untagged: the local answer stands
        assert ask(gateway, "up two", route="cloud") == ("cache", "down")


def test_the_cache_outliving_a_restart_never_serves_another_configuration(openai: FakeOpenAI, tmp_path: Path) -> None:
    with running(config(tmp_path, openai), tmp_path) as gateway:
        assert ask(gateway, "sideways one") == ("remote", "down")
        assert ask(gateway, "up two") == ("local", "up two")
        assert ask(gateway, "up two") == ("cache", "up two")
    with running(config(tmp_path, openai, offline=True), tmp_path) as gateway:
        assert ask(gateway, "sideways one") == ("local", "sideways one")  # offline: not the provider's answer
        assert ask(gateway, "sideways three") == ("local", "sideways three")  # kept only because it is offline
        assert ask(gateway, "up two") == ("local", "up two")
    with running(config(tmp_path, openai), tmp_path) as gateway:
        assert ask(gateway, "sideways three") == ("remote", "down")  # online again: it escalates
        assert ask(gateway, "up two") == ("cache", "up two")  # the same decision as the first run: a hit
    other_prompt = TREND.replace("Answer up or down.", "Answer with one word.")
    with running(config(tmp_path, openai, task=other_prompt), tmp_path) as gateway:
        assert ask(gateway, "up two") == ("local", "up two")  # another system prompt: another question
    with running(config(tmp_path, openai, model="gpt-test-2"), tmp_path) as gateway:
        assert ask(gateway, "sideways three") == ("remote", "down")  # another provider model answers afresh
        assert ask(gateway, "sideways three") == ("cache", "down")


def test_entries_are_per_api_key_unless_shared(openai: FakeOpenAI, tmp_path: Path) -> None:
    text = config(tmp_path, openai)
    (tmp_path / "keys.toml").write_text(text)
    keys = {name: keys_cli(tmp_path / "keys.toml", "create", name) for name in ("desk-a", "desk-b")}
    env = keys_file(tmp_path / "state")
    with running(text, tmp_path, env) as gateway:
        assert ask(gateway, "up four", key=keys["desk-a"]) == ("local", "up four")
        assert ask(gateway, "up four", key=keys["desk-a"]) == ("cache", "up four")
        assert ask(gateway, "up four", key=keys["desk-b"]) == ("local", "up four")  # desk-b learns nothing of desk-a
    shared = config(tmp_path, openai, extra="[cache]\nshared_across_keys = true")
    with running(shared, tmp_path, env) as gateway:
        assert ask(gateway, "up five", key=keys["desk-a"]) == ("local", "up five")
        assert ask(gateway, "up five", key=keys["desk-b"]) == ("cache", "up five")  # opted in: one cache


def test_a_threshold_the_audit_raises_is_in_force_for_cached_answers(openai: FakeOpenAI, tmp_path: Path) -> None:
    """The Ollama stand-in answers "up" at confidence 0.916 (p 0.9 against "down" at e^-2.5): above the task's
    0.9, below the 0.95 that three audits which all disagree (the provider says "down") raise it to."""
    ollama = FakeOllama()
    ollama.models[BASE_MODEL].reply = "up"
    task = """
[tasks.trend]
labels = ["up", "down"]
min_confidence = 0.9
learn = true
[learning]
audit_rate = 1.0
audit_budget_share = 1.0
min_audits = 3
threshold_step = 0.05
"""
    with serving_in_thread(ollama) as served:  # type: ignore[arg-type]
        local = f'[local]\nbackend = "ollama"\n[local.ollama]\nhost = "{served.host}"'  # type: ignore[attr-defined]
        with running(config(tmp_path, openai, local=local, task=task), tmp_path) as gateway:
            for days in (10, 11, 12):
                assert ask(gateway, f"Closes rose {days} days.") == ("local", "up")
            gateway.wait_for_log("threshold raised to 0.950", timeout_s=30)
            assert ask(gateway, "Closes rose 10 days.") == ("remote", "down")  # 0.916 no longer stands
