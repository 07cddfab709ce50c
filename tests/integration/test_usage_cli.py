"""`python -m gateway usage` against a real gateway process: --json, --day and --since read GetUsage's figures.

Yesterday's traffic is written into the gateway's own usage store and ledger before it starts
(tests/usage_history.py); today's comes through gRPC from two clients (echo backend, the OpenAI
stand-in for requests a rule escalates).
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from gateway.cli import format_usage, usage_json
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Reply
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, gateway_cli, get_usage, start_gateway
from tests.usage_history import seed, yesterday

CONFIG = """
state_dir = "{state_dir}"

[local]
backend = "echo"

[routing]
escalation_order = ["openai"]

[[routing.rules]]
match_tag = {{ route = "remote" }}
escalate = true

[providers.openai]
model = "gpt-test"
base_url = "{base_url}"
daily_token_budget = 2000000
max_retries = 0
price_in_per_mtok = 2.5
price_out_per_mtok = 10.0

[usage]
reference_provider = "openai"
retention_days = 7
"""


def today() -> str:
    return datetime.now(UTC).date().isoformat()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("usage-cli")
    asyncio.run(seed(workdir, yesterday()))
    with serving_in_thread(FakeOpenAI(reply=Reply("up"))) as fake, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", TEST_KEYS["OPENAI_API_KEY"])
        config = CONFIG.format(state_dir=workdir / "state", base_url=fake.base_url)  # type: ignore[attr-defined]
        process = start_gateway(config, workdir, ready_timeout_s=60)
        try:
            with grpc.insecure_channel(process.target) as channel:
                stub = pb_grpc.InferenceGatewayStub(channel)
                for i, (client, tags) in enumerate([("desk-1", {}), ("desk-2", {}), ("desk-2", {"route": "remote"})]):
                    message = pb.ChatMessage(role="user", content=f"question {i}")
                    request = pb.GenerateRequest(messages=[message], tags={"client_id": client, **tags})
                    stub.Generate(request, timeout=30)
            yield process
        finally:
            process.stop()


def cli(gateway: GatewayProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return gateway_cli("usage", "--target", gateway.target, *args, check=check)


def json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_json_has_todays_figures_under_stable_keys(gateway: GatewayProcess) -> None:
    (body,) = json_lines(cli(gateway, "--json").stdout)
    usage = get_usage(gateway)
    assert body == usage_json(usage)
    assert body["day"] == today() and body["requests"] == 3
    assert body["requests_by_tier"] == {"local": 2, "remote": 1}
    assert body["escalations_by_reason"] == {"rule": 1}
    assert list(body) == [
        "day",
        "client",
        "requests",
        "requests_by_tier",
        "requests_by_provider",
        "escalations_by_reason",
        "tokens_by_tier",
        "cached_prompt_tokens",
        "cache_write_tokens",
        "providers",
        "latency_ms",
        "cost_usd",
        "reference_cost_usd",
        "saved_usd",
        "reference_provider",
        "local_accuracy",
    ]
    assert body["latency_ms"] == {
        "count": 3,
        "p50": usage.latency.p50_ms,
        "p90": usage.latency.p90_ms,
        "p99": usage.latency.p99_ms,
        "max": usage.latency.max_ms,
    }


def test_one_day_and_one_client(gateway: GatewayProcess) -> None:
    (body,) = json_lines(cli(gateway, "--json", "--day", yesterday(), "--client", "desk-2").stdout)
    usage = get_usage(gateway, day=yesterday(), client="desk-2")
    assert body == usage_json(usage, "desk-2")
    everyone = get_usage(gateway, day=yesterday())
    assert body["day"] == yesterday() and 0 < usage.requests < everyone.requests
    providers = body["providers"]
    assert isinstance(providers, list) and len(providers) == 1
    assert providers[0]["tokens_used"] == everyone.providers[0].tokens_used > 0  # budgets: every client's
    assert math.isclose(float(body["cost_usd"]), usage.cost_usd)  # type: ignore[arg-type]


def test_since_prints_one_report_per_day_oldest_first(gateway: GatewayProcess) -> None:
    since = (datetime.now(UTC).date() - timedelta(days=2)).isoformat()
    days = [since, yesterday(), today()]
    lines = json_lines(cli(gateway, "--json", "--since", since).stdout)
    assert [line["day"] for line in lines] == days
    assert lines == [usage_json(get_usage(gateway, day=day)) for day in days]
    assert [line["requests"] for line in lines] == [0, get_usage(gateway, day=yesterday()).requests, 3]

    text = cli(gateway, "--since", yesterday()).stdout
    expected = "\n\n".join(format_usage(get_usage(gateway, day=day)) for day in days[1:])
    assert text.strip() == expected.strip()


def test_a_day_outside_the_retention_or_not_a_date_is_refused_by_name(gateway: GatewayProcess) -> None:
    old = (datetime.now(UTC).date() - timedelta(days=8)).isoformat()
    done = cli(gateway, "--day", old, check=False)
    assert done.returncode != 0 and "INVALID_ARGUMENT" in done.stderr and f"day: {old}" in done.stderr
    assert "retention_days" in done.stderr
    done = cli(gateway, "--day", "18/11/2026", check=False)
    assert done.returncode == 2 and "--day: '18/11/2026' is not a date; use YYYY-MM-DD" in done.stderr
    done = cli(gateway, "--day", today(), "--since", today(), check=False)
    assert done.returncode == 2 and "not allowed with argument" in done.stderr
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    done = cli(gateway, "--since", tomorrow, check=False)
    assert done.returncode != 0 and "after today" in done.stderr


def test_get_usage_refuses_a_bucket_size_by_name(gateway: GatewayProcess) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        get_usage(gateway, bucket_s=45)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bucket_s: 45" in (caught.value.details() or "")


def test_get_usage_series_add_up_to_the_days_figures(gateway: GatewayProcess) -> None:
    usage = get_usage(gateway, day=yesterday(), bucket_s=3600)
    series = usage.series
    assert series.bucket_s == 3600 and len(series.requests) == 24
    assert sum(series.requests) == usage.requests
    for tier in series.requests_by_tier:
        assert sum(tier.values) == usage.requests_by_tier[tier.name]
    for reason in series.escalations_by_reason:
        assert sum(reason.values) == usage.escalations_by_reason[reason.name]
    (tokens,) = series.tokens_by_provider
    assert sum(tokens.values) == usage.providers[0].tokens_used == usage.tokens_by_tier["remote"]
    assert math.isclose(sum(series.cost_usd), usage.cost_usd, rel_tol=1e-9)
    assert max(series.latency_p99_ms) <= usage.latency.max_ms
    assert list(series.clients) == ["desk-1", "desk-2", "risk-batch"]
    assert sum(t.requests for t in usage.tasks) == usage.requests and len(series.burn) == 0
    today_usage = get_usage(gateway, bucket_s=60)
    (burn,) = today_usage.series.burn
    assert burn.provider == "openai" and burn.tokens_per_s > 0 and burn.exhausted_at == ""  # not before the reset
    assert list(today_usage.series.clients) == ["desk-1", "desk-2"]
