"""Server lifecycle with the instant echo backend: first log line, drain on SIGTERM, capacity."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import GatewayProcess, start_gateway
from tests.waiting import wait_until


def ask(content: str = "hello trading desk", **fields: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=content)], **fields)  # type: ignore[arg-type]


def wait_in_flight(gateway: GatewayProcess) -> None:
    """Until the echo backend holds a call (the in-flight gauge on /metrics)."""
    wait_until(lambda: gateway.metric("gateway_local_in_flight") >= 1, timeout_s=30, what="a call in flight")


def test_sigterm_drains_in_flight_calls_then_exits(tmp_path: Path) -> None:
    gateway = start_gateway('[local]\nbackend = "echo"\n[local.echo]\ndelay_ms = 1500\n', tmp_path)
    with grpc.insecure_channel(gateway.target) as channel, ThreadPoolExecutor(2) as pool:
        stub = pb_grpc.InferenceGatewayStub(channel)
        in_flight = pool.submit(stub.Generate, ask("still answered"), timeout=30)
        wait_in_flight(gateway)
        gateway.process.send_signal(signal.SIGTERM)
        # /healthz says 503 from the moment the gateway drains, which is when it stops taking gRPC calls.
        wait_until(lambda: gateway.healthz() == 503, timeout_s=30, what="/healthz to say draining")
        assert in_flight.result().text == "still answered"
        with pytest.raises(grpc.RpcError) as err:
            stub.Generate(ask(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert gateway.process.wait(30) == 0
    assert '"msg": "stopped"' in gateway.log_text()


def test_first_log_line_says_what_is_served(tmp_path: Path) -> None:
    gateway = start_gateway('[local]\nbackend = "echo"\n', tmp_path)
    try:
        first = json.loads(gateway.log_text().splitlines()[0])
        assert first["msg"].startswith("serving echo, local only")
        assert first["msg"].endswith("; authentication off (no API keys), plaintext on loopback")
    finally:
        assert gateway.stop() == 0


def test_local_capacity_without_remote_is_resource_exhausted(tmp_path: Path) -> None:
    gateway = start_gateway('[local]\nbackend = "echo"\n[local.echo]\ndelay_ms = 1000\nmax_in_flight = 1\n', tmp_path)
    try:
        with grpc.insecure_channel(gateway.target) as channel, ThreadPoolExecutor(2) as pool:
            stub = pb_grpc.InferenceGatewayStub(channel)
            first = pool.submit(stub.Generate, ask("first"), timeout=30)
            wait_in_flight(gateway)
            with pytest.raises(grpc.RpcError) as err:
                stub.Generate(ask("second"), timeout=30)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "in-flight limit" in err.value.details()
            assert first.result().text == "first"
    finally:
        gateway.stop()


def test_config_with_unknown_key_is_rejected_naming_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.gateway_process import ROOT

    config = tmp_path / "bad.toml"
    config.write_text("[server]\nprot = 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "unknown key 'server.prot'" in done.stderr
