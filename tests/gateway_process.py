"""Start a real gateway process (`python -m gateway serve`) for tests, and stop it with SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

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
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if needle in line:
                    return line
            time.sleep(0.1)
        raise AssertionError(f"{needle!r} not logged within {timeout_s}s:\n{self.log_text()[-3000:]}")

    def stop(self, timeout_s: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


def start_gateway(
    config_toml: str, workdir: Path, *, env: dict[str, str] | None = None, ready_timeout_s: float = 300.0
) -> GatewayProcess:
    """Write the config, start the server, wait until gRPC health says SERVING."""
    port, http_port = free_port(), free_port()
    config = workdir / "gateway.toml"
    config.write_text(config_toml)
    log_path = workdir / "gateway.log"
    state = {  # every process gets its own ledger, cache and usage records
        f"GATEWAY__{section}__PATH": str(workdir / f"{section.lower()}.sqlite3")
        for section in ("BUDGET", "CACHE", "USAGE")
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **state, **(env or {})}
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(config), "--port", str(port)]
    command += ["--http-port", str(http_port)]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    gateway = GatewayProcess(process, f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}", log_path)
    _wait_serving(gateway, ready_timeout_s)
    return gateway


def _wait_serving(gateway: GatewayProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(gateway.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if gateway.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {gateway.process.returncode}:\n{gateway.log_text()[-3000:]}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    gateway.stop()
    raise RuntimeError(f"gateway not serving after {timeout_s}s:\n{gateway.log_text()[-3000:]}")
