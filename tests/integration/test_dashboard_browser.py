"""The dashboard in headless Chromium shows what GetUsage and `python -m gateway usage` report.

Today's traffic goes through a real gateway process (echo backend, the OpenAI
stand-in for requests a rule escalates); yesterday's is written into its usage
store and ledger before it starts (tests/usage_history.py). The page is loaded
in Debian's chromium through Playwright (never a downloaded browser); every
figure on it, and every point of every chart (the values each SVG path carries
in data-values), is compared with GetUsage for the day and client picked. The
screenshot of yesterday is kept in artifacts/dashboard.png; with
UPDATE_SCREENSHOT=1 it also replaces docs/img/dashboard.png (the README's).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from gateway.cli import format_usage
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import Reply
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import ROOT, GatewayProcess, gateway_cli, get_usage, start_gateway
from tests.usage_history import seed, yesterday
from tests.waiting import wait_until, wait_until_async

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
ARTIFACT = ROOT / "artifacts" / "dashboard.png"
README_SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"
TIERS = ("local", "cache", "remote")
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
daily_token_budget = 150000
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
    asyncio.run(seed(workdir, yesterday()))
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
            fetched: list[str] = []
            page.on("request", lambda request: fetched.append(request.url))
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
            await check_totals(page, usage)
            await expect_charts(page, gateway, day="", client="")
            assert await page.get_attribute("#day-pick", "max") == usage.day
            oldest = (datetime.now(UTC).date() - timedelta(days=30)).isoformat()  # [usage] retention_days
            assert await page.get_attribute("#day-pick", "min") == oldest

            await page.fill("#day-pick", yesterday())  # a past day, everyone
            await page.wait_for_function("d => document.getElementById('day').textContent === d", arg=yesterday())
            await check_totals(page, get_usage(gateway, day=yesterday()))
            await expect_charts(page, gateway, day=yesterday(), client="")
            assert await page.locator("#recent tr").count() == 0  # recent requests are today's
            await screenshot(page)

            await page.select_option("#client", "desk-2")  # one client seen that day
            await page.wait_for_function("() => (document.body.dataset.query || '').includes('client=desk-2')")
            await check_totals(page, get_usage(gateway, day=yesterday(), client="desk-2"))
            await expect_charts(page, gateway, day=yesterday(), client="desk-2")
            assert fetched and all(url.startswith(gateway.http_url + "/") for url in fetched)  # works offline
        finally:
            await browser.close()


async def screenshot(page: Any) -> None:
    """The totals, the charts and the task panel (the top of the page), the day picker not focused."""
    ARTIFACT.parent.mkdir(exist_ok=True)
    await page.locator("#day-pick").blur()
    await page.set_viewport_size({"width": 1280, "height": 1300})
    await page.screenshot(path=str(ARTIFACT))
    print(f"\ndashboard screenshot: {ARTIFACT}")
    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ARTIFACT, README_SCREENSHOT)


async def check_totals(page: Any, usage: pb.GetUsageResponse) -> None:
    """The day's figures at the top of the page and in the budget and escalation panels."""

    async def text(selector: str) -> str:
        return (await page.text_content(selector) or "").strip()

    assert await text("#day") == usage.day
    assert await text("#requests") == f"{usage.requests:,}"
    for tier in TIERS:
        count = usage.requests_by_tier.get(tier, 0)
        assert await text(f"#tier-{tier}") == f"{count:,}"
        assert await text(f"#share-{tier}") == f"{100 * count / usage.requests:.1f}%"
    assert await text("#cost") == f"${usage.cost_usd:.4f}"
    assert await text("#saved") == f"${usage.saved_usd:.4f}"
    for name in ("p50", "p90", "p99", "max"):
        assert await text(f"#lat-{name}") == f"{getattr(usage.latency, f'{name}_ms'):.2f}"
    for p in usage.providers:
        assert await text(f'[data-provider="{p.provider}"] .used') == f"{p.tokens_used:,}"
        assert await text(f'[data-provider="{p.provider}"] .requests') == f"{p.requests:,}"
    for reason, count in usage.escalations_by_reason.items():
        assert await text(f'[data-reason="{reason}"]') == f"{count:,}"


async def expect_charts(page: Any, gateway: GatewayProcess, *, day: str, client: str) -> None:
    """Every chart point, the task panel and the client picker agree with GetUsage (asked again until they do:
    today's page and GetUsage may read a minute apart)."""
    differences: list[str] = []

    async def agree() -> bool:
        nonlocal differences
        usage = get_usage(gateway, day=day, client=client, bucket_s=300)  # the page asks for 5-minute buckets
        differences = await chart_differences(page, usage)
        return not differences

    try:
        await wait_until_async(agree, timeout_s=30, what="the charts to match GetUsage", interval_s=0.2)  # type: ignore[arg-type]
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {differences}") from None


DRAWN = """() => {
  const out = {};
  for (const path of document.querySelectorAll("[id^=chart-] path[data-values]")) {
    const chart = path.closest("[id^=chart-]").id;
    (out[chart] = out[chart] || {})[path.dataset.name] = JSON.parse(path.dataset.values);
  }
  return out;
}"""
PROJECTED = "els => Object.fromEntries(els.map((e) => [e.dataset.name, e.dataset.exhaustedAt]))"
TASK_ROWS = """els => els.map((e) => [e.dataset.taskRow, ...[".requests", ".local", ".confidence", ".threshold"]
  .map((c) => e.querySelector(c).textContent)])"""


def expected_charts(usage: pb.GetUsageResponse) -> dict[str, dict[str, Sequence[float | None]]]:
    """What each chart should draw, computed from GetUsage's series the way the page describes them."""
    s = usage.series
    n = len(s.requests)

    def series(rows: Sequence[pb.BucketCounts]) -> dict[str, list[int]]:
        return {row.name: list(row.values) for row in rows}

    tiers, reasons, tokens = series(s.requests_by_tier), series(s.escalations_by_reason), series(s.tokens_by_provider)
    busy = [r > 0 for r in s.requests]
    spent, reference = cumulative(s.cost_usd), cumulative(s.reference_cost_usd)
    return {
        "chart-tiers": {t: [v * 60 / s.bucket_s for v in tiers.get(t, [0] * n)] for t in TIERS},
        "chart-burn": {
            p.provider: [p.token_budget - used for used in cumulative(tokens.get(p.provider, [0] * n))]
            for p in usage.providers
            if p.token_budget
        },
        "chart-escalations": {
            r: [100 * v / total if total else None for v, total in zip(values, s.requests, strict=True)]
            for r, values in reasons.items()
        },
        "chart-latency": {
            "p50": [v if b else None for v, b in zip(s.latency_p50_ms, busy, strict=True)],
            "p99": [v if b else None for v, b in zip(s.latency_p99_ms, busy, strict=True)],
        },
        "chart-cost": {"spent": spent, "saved": [max(r - c, 0.0) for r, c in zip(reference, spent, strict=True)]},
    }


def cumulative(values: Sequence[float]) -> list[float]:
    out, total = [], 0.0
    for v in values:
        total += v
        out.append(total)
    return out


TOLERANCE = {"chart-latency": 6e-4, "chart-cost": 1e-8}  # the page's JSON rounds ms to 1e-3, USD to 1e-9


def close(drawn: Sequence[float | None], expected: Sequence[float | None], tolerance: float) -> bool:
    return len(drawn) == len(expected) and all(
        (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, abs_tol=tolerance))
        for a, b in zip(drawn, expected, strict=True)
    )


async def chart_differences(page: Any, usage: pb.GetUsageResponse) -> list[str]:
    found: list[str] = []
    drawn = await page.evaluate(DRAWN)
    for chart, lines in expected_charts(usage).items():
        mine = drawn.get(chart, {})
        if set(mine) != set(lines):
            found.append(f"{chart}: drew {sorted(mine)}, GetUsage has {sorted(lines)}")
        tolerance = TOLERANCE.get(chart, 1e-9)
        found += [
            f"{chart} {name}: drew {mine[name]}, GetUsage {values}"
            for name, values in lines.items()
            if name in mine and not close(mine[name], values, tolerance)
        ]
    return found + await burn_differences(page, usage) + await panel_differences(page, usage)


async def burn_differences(page: Any, usage: pb.GetUsageResponse) -> list[str]:
    """Today: each budget's projection ends when GetUsage says it runs out; a past day has none."""
    found: list[str] = []
    projected = await page.eval_on_selector_all("#chart-burn path.projection", PROJECTED)
    burn = {b.provider: b.exhausted_at for b in usage.series.burn}
    if projected != {p.provider: burn[p.provider] for p in usage.providers if p.token_budget and p.provider in burn}:
        found.append(f"projections {projected} != GetUsage {burn}")
    for p in usage.providers:
        note = (await page.text_content(f'[data-burn="{p.provider}"]') or "").strip()
        if not note.startswith(f"{p.provider} {p.tokens_used:,} of {p.token_budget:,} tokens used"):
            found.append(f"burn note {note!r}")
        shown = await page.query_selector(f'[data-burn="{p.provider}"] .when')  # none on a past day
        when = None if shown is None else await shown.text_content()
        at = burn.get(p.provider)
        wanted = None if at is None else f"runs out at {at[11:16]} UTC" if at else "not before reset"
        if when != wanted:
            found.append(f"burn note says {when!r}, GetUsage {wanted!r}")
    return found


async def panel_differences(page: Any, usage: pb.GetUsageResponse) -> list[str]:
    """The per-task panel and the clients the picker offers."""
    found: list[str] = []
    rows = await page.eval_on_selector_all("#tasks tr[data-task-row]", TASK_ROWS)
    wanted = [
        [
            t.task,
            f"{t.requests:,}",
            f"{100 * t.local / t.requests:.1f}%",
            f"{t.confidence_mean:.3f}" if t.HasField("confidence_mean") else "-",
            f"{t.threshold:.3f}",
        ]
        for t in usage.tasks
    ]
    if rows != wanted:
        found.append(f"tasks {rows} != {wanted}")
    options = await page.eval_on_selector_all("#client option", "els => els.map((e) => e.value)")
    if options != ["", *usage.series.clients]:
        found.append(f"client picker {options} != {list(usage.series.clients)}")
    return found


def test_the_cli_prints_the_same_figures(gateway: GatewayProcess) -> None:
    usage = get_usage(gateway)
    printed = gateway_cli("usage", "--target", gateway.target).stdout
    assert printed.strip() == format_usage(usage).strip()
    assert "openai" in printed and "saved $" in printed
