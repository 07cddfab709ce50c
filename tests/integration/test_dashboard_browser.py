"""The dashboard in headless Chromium shows what GetUsage and `python -m gateway usage` report.

Traffic goes through a real gateway process (echo backend, the OpenAI stand-in
for requests a rule escalates); the page is loaded in Debian's chromium through
Playwright (never a downloaded browser) and every figure on it is compared with
GetUsage. The screenshot is kept in artifacts/dashboard.png.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.cli import format_usage
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Reply
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import ROOT, GatewayProcess, start_gateway
from tests.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACT = ROOT / "artifacts" / "dashboard.png"
SECRET_PROMPT = "secret-prompt-text"

CONFIG = """
cache_dir = "{cache_dir}"
state_dir = "{cache_dir}/state"

[server]
default_max_tokens = 8
drain_timeout_s = 5

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
daily_token_budget = 5000
max_retries = 0
price_in_per_mtok = 2.5
price_out_per_mtok = 10.0

[usage]
reference_provider = "openai"

[tasks.trend]
labels = ["up", "down"]
learn = true

[learning]
audit_rate = 1.0                # every confident local answer of trend is audited

[dashboard]
refresh_s = 0.5
"""


def _require_browser() -> None:
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        missing.append("chromium (apt-get install -y chromium)")
    if missing:
        message = "needs " + " and ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must install it (.ci/run does)", pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    _require_browser()
    workdir = tmp_path_factory.mktemp("dashboard")
    with serving_in_thread(FakeOpenAI(reply=Reply("up"))) as fake, pytest.MonkeyPatch.context() as env:
        env.setenv("OPENAI_API_KEY", TEST_KEYS["OPENAI_API_KEY"])
        config = CONFIG.format(cache_dir=workdir / "cache", base_url=fake.base_url)  # type: ignore[attr-defined]
        process = start_gateway(config, workdir, ready_timeout_s=60)
        try:
            yield process
        finally:
            process.stop()


def _drive_traffic(stub: pb_grpc.InferenceGatewayStub) -> None:
    def ask(text: str, **tags: str) -> pb.GenerateResponse:
        message = pb.ChatMessage(role="user", content=f"{SECRET_PROMPT} {text}")
        request = pb.GenerateRequest(messages=[message], tags={"client_id": "desk-1", **tags})
        return stub.Generate(request, timeout=30)

    for i in range(5):
        assert ask(f"local {i}").tier == pb.TIER_LOCAL
    for _ in range(3):
        assert ask("local 0").tier == pb.TIER_CACHE
    for i in range(4):
        assert ask(f"remote {i}", route="remote").tier == pb.TIER_REMOTE
    trend = pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="up")], task="trend")
    assert stub.Generate(trend, timeout=30).tier == pb.TIER_LOCAL  # kept locally, then audited in the background

    def audited() -> bool:
        usage = stub.GetUsage(pb.GetUsageRequest(), timeout=10)
        return [(a.task, a.audited, a.agreed) for a in usage.local_accuracy] == [("trend", 1, 1)]

    wait_until(audited, timeout_s=30, what="the audit of the trend answer in GetUsage")


async def test_the_dashboard_shows_what_get_usage_reports(gateway: GatewayProcess) -> None:
    from playwright.async_api import async_playwright

    with grpc.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        _drive_traffic(stub)
        usage = stub.GetUsage(pb.GetUsageRequest(), timeout=10)
    assert usage.requests == 13
    assert dict(usage.requests_by_tier) == {"local": 6, "cache": 3, "remote": 4}

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1000})
            await page.goto(gateway.http_url + "/")
            await page.wait_for_function(
                "n => document.getElementById('requests').textContent === n", arg=str(usage.requests)
            )

            async def text(selector: str) -> str:
                return (await page.text_content(selector) or "").strip()

            assert await text("#day") == usage.day
            for tier in ("local", "cache", "remote"):
                count = usage.requests_by_tier[tier]
                assert await text(f"#tier-{tier}") == str(count)
                assert await text(f"#share-{tier}") == f"{100 * count / usage.requests:.1f}%"
            assert await text("#cost") == f"${usage.cost_usd:.4f}"
            assert await text("#saved") == f"${usage.saved_usd:.4f}"
            assert usage.saved_usd > 0
            assert await text("#reference") == usage.reference_provider == "openai"
            assert await text("#lat-p50") == f"{usage.latency.p50_ms:.2f}"
            assert await text("#lat-p90") == f"{usage.latency.p90_ms:.2f}"
            assert await text("#lat-p99") == f"{usage.latency.p99_ms:.2f}"
            assert await text("#lat-max") == f"{usage.latency.max_ms:.2f}"
            (openai,) = [row for row in usage.providers if row.provider == "openai"]
            assert openai.tokens_used > 0
            assert await text('[data-provider="openai"] .used') == f"{openai.tokens_used:,}"
            assert await text('[data-provider="openai"] .budget') == f"{openai.token_budget:,}"
            assert await text('[data-provider="openai"] .requests') == str(openai.requests) == "5"  # 4 + the audit
            assert await text('[data-reason="rule"]') == str(usage.escalations_by_reason["rule"]) == "4"
            assert await page.locator("#recent tr").count() == 13
            (live,) = usage.local_accuracy
            assert await text('[data-task="trend"]') == (
                f"{live.estimate:.3f} (95% {live.low:.3f}-{live.high:.3f}) · 1/1 agree · "
                f"threshold {live.threshold:.3f} · target {live.target:.2f}"
            )
            assert SECRET_PROMPT not in await page.content()  # no prompt text unless record_prompts
            ARTIFACT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACT), full_page=True)
            print(f"\ndashboard screenshot: {ARTIFACT}")
        finally:
            await browser.close()


def test_the_cli_prints_the_same_figures(gateway: GatewayProcess) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        usage = pb_grpc.InferenceGatewayStub(channel).GetUsage(pb.GetUsageRequest(), timeout=10)
    printed = subprocess.run(
        [sys.executable, "-m", "gateway", "usage", "--target", gateway.target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert printed.strip() == format_usage(usage).strip()
    assert "openai" in printed and "saved $" in printed
