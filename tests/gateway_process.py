"""Start a real gateway process (`python -m gateway serve`) for tests, stop it with SIGTERM, and run its CLI."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    target: str
    http_url: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, needle: str, timeout_s: float = 15.0) -> str:
        def logged() -> str:
            return next((line for line in self.log_text().splitlines() if needle in line), "")

        try:
            return wait_until(logged, timeout_s=timeout_s, what=f"{needle!r} in the log", interval_s=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_text()[-3000:]}") from None

    def metric(self, name: str) -> float:
        """One unlabelled sample from the HTTP side port's /metrics."""
        body = urllib.request.urlopen(f"{self.http_url}/metrics", timeout=5).read().decode()
        match = re.search(rf"^{re.escape(name)} (\S+)$", body, re.MULTILINE)
        assert match, f"{name} not in /metrics"
        return float(match.group(1))

    def healthz(self) -> int:
        """The HTTP status of /healthz: 200 while serving, 503 once draining."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=5) as reply:
                return int(reply.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


def start_gateway(
    config_toml: str,
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    ready_timeout_s: float = 300.0,
    entry: Sequence[str] = ("-m", "gateway"),
) -> GatewayProcess:
    """Write the config, start the server, wait until gRPC health says SERVING.

    `entry`: what runs `serve ...` (another module for a process built differently, e.g. tests.tracing_gateway).
    """
    port, http_port = free_port(), free_port()
    config = workdir / "gateway.toml"
    config.write_text(config_toml)
    log_path = workdir / "gateway.log"
    state = {  # every process gets its own ledger, cache, usage records, training rows and API keys
        f"GATEWAY__{section}__PATH": str(workdir / f"{section.lower()}.sqlite3")
        for section in ("BUDGET", "CACHE", "USAGE", "LEARNING", "KEYS")
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **state, **(env or {})}
    command = [sys.executable, *entry, "serve", "--config", str(config), "--port", str(port)]
    command += ["--http-port", str(http_port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    gateway = GatewayProcess(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}", log_path)
    _wait_serving(gateway, ready_timeout_s)
    return gateway


def get_usage(gateway: GatewayProcess, **fields: str | int) -> pb.GetUsageResponse:
    request = pb.GetUsageRequest(**fields)  # type: ignore[arg-type]
    with grpc.insecure_channel(gateway.target) as channel:
        response: pb.GetUsageResponse = pb_grpc.InferenceGatewayStub(channel).GetUsage(request, timeout=10)
    return response


def gateway_cli(*args: str, check: bool = True, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m gateway ARGS...` from the repository root, its output captured as text."""
    command = [sys.executable, "-m", "gateway", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, check=check)


def keys_file(state_dir: Path) -> dict[str, str]:
    """The environment that points a gateway at the keys `keys_cli` wrote under `state_dir` (start_gateway
    gives each process a key file of its own unless told)."""
    return {"GATEWAY__KEYS__PATH": str(state_dir / "keys.sqlite3")}


def keys_cli(config_file: Path, *args: str) -> str:
    """`gateway keys ARGS... --config CONFIG_FILE`; what it printed, stripped."""
    return gateway_cli("keys", *args, "--config", str(config_file)).stdout.strip()


def _wait_serving(gateway: GatewayProcess, timeout_s: float) -> None:
    with grpc.insecure_channel(gateway.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool:
            if gateway.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {gateway.process.returncode}:\n{gateway.log_text()[-3000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        try:
            wait_until(serving, timeout_s=timeout_s, what="gRPC health SERVING", interval_s=0.2)
        except AssertionError:
            gateway.stop()
            raise RuntimeError(f"gateway not serving after {timeout_s}s:\n{gateway.log_text()[-3000:]}") from None
