"""gateway.client against a real gateway process (echo backend): typed results, streams, batches, errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import pytest

from gateway.client import (
    AsyncGatewayClient,
    DeadlineExceeded,
    Escalation,
    GatewayClient,
    InvalidArgument,
    Message,
    Privacy,
    Request,
    Result,
    Tier,
    UsageReport,
)
from tests.gateway_process import GatewayProcess, start_gateway
from tests.waiting import wait_until

# Each answer takes 100 ms, so a 20 ms deadline always passes first; the echo backend gives the capacity
# check no estimate, so the call is admitted and its deadline passes mid-work (not refused up front).
ECHO = """
[local]
backend = "echo"

[local.echo]
delay_ms = 100
report_delay = false

[cache]
enabled = false
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(ECHO, tmp_path_factory.mktemp("client-gateway"))
    yield process
    process.stop()


@pytest.fixture
def gw(gateway: GatewayProcess) -> Iterator[GatewayClient]:
    with GatewayClient(gateway.target, timeout_s=30) as client:
        yield client


def test_generate_returns_a_typed_result(gw: GatewayClient) -> None:
    request = Request(
        [Message("system", "be brief"), Message("user", "buy 100 AAPL")], privacy=Privacy.LOCAL_ONLY, request_id="r-1"
    )
    result = gw.generate(request)
    assert result.text == "buy 100 AAPL"
    assert (result.request_id, result.tier, result.provider, result.model) == ("r-1", Tier.LOCAL, "echo", "echo")
    assert result.escalation is Escalation.NONE and result.confidence == pytest.approx(1.0)
    assert result.usage.completion_tokens == 3 and result.usage.prompt_tokens > 0
    assert result.attempts and result.attempts[0].provider == "echo" and result.latency_ms > 0


def test_generate_stream_yields_deltas_then_the_result(gw: GatewayClient) -> None:
    items = list(gw.generate_stream("one two three"))
    *deltas, final = items
    assert "".join(str(d) for d in deltas) == "one two three" and len(deltas) == 3
    assert isinstance(final, Result) and final.text == "one two three" and final.tier is Tier.LOCAL


def test_route_batch_answers_in_order(gw: GatewayClient) -> None:
    results = gw.route_batch(["first", Request("second", task=""), "third"])
    assert [r.text for r in results] == ["first", "second", "third"]


def test_bad_input_raises_invalid_argument_naming_the_field(gw: GatewayClient) -> None:
    with pytest.raises(InvalidArgument) as err:
        gw.generate(Request("x", temperature=9.0))
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT and "temperature" in err.value.message
    with pytest.raises(InvalidArgument, match=r"requests\[1\]\.min_confidence"):
        gw.route_batch(["ok", Request("x", min_confidence=2.0)])
    with pytest.raises(ValueError, match="priority"):
        gw.generate(Request("x", priority="fast"))  # type: ignore[arg-type]


def test_the_deadline_ends_the_call(gw: GatewayClient) -> None:
    with pytest.raises(DeadlineExceeded) as err:
        gw.generate("too slow", timeout=0.02)
    assert err.value.code is grpc.StatusCode.DEADLINE_EXCEEDED
    with pytest.raises(DeadlineExceeded):
        list(gw.generate_stream("one two three four", timeout=0.02))


def test_models_and_usage(gw: GatewayClient) -> None:
    names = {(m.name, m.tier) for m in gw.models()}
    assert ("echo", Tier.LOCAL) in names
    gw.generate("counted")

    def counted() -> UsageReport | None:
        report = gw.usage()
        return report if report.requests_by_tier.get("local", 0) >= 1 else None

    report = wait_until(counted, timeout_s=15, what="GetUsage to count a local answer")
    assert report is not None
    assert report.day and report.requests >= 1 and report.latency.count >= 1
    assert gw.usage(client="nobody").requests == 0  # filtered by API key name


async def test_async_client_against_the_gateway(gateway: GatewayProcess) -> None:
    async with AsyncGatewayClient(gateway.target, timeout_s=30) as gw:
        one, two = await asyncio.gather(gw.generate("alpha"), gw.generate("beta"))
        assert (one.text, two.text) == ("alpha", "beta")
        items = [item async for item in gw.generate_stream("up down")]
        assert items[:-1] == ["up", " down"] and isinstance(items[-1], Result)
        assert [r.text for r in await gw.route_batch(["x", "y"])] == ["x", "y"]
        assert any(m.name == "echo" for m in await gw.models())
        assert (await gw.usage()).day
        with pytest.raises(DeadlineExceeded):
            await gw.generate("too slow", timeout=0.02)
        with pytest.raises(InvalidArgument, match="messages"):
            await gw.generate(Request([]))
