"""What the benchmark scripts share: free ports, CPU pinning, the load average, starting, waiting for, stopping servers.

The scripts run as `python scripts/bench_x.py`, so this folder is on sys.path and
they `import benchlib`. Nothing here imports the gateway at module level: the
scripts put the checkout on sys.path before they call what needs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def taskset(core: int | None = None) -> list[str]:
    """The prefix that pins a command to `core` (`taskset` alone: pinning is possible); [] without it."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)] if core is not None else ["taskset"]


def load_average(one_minute: bool = False) -> str:
    """The 1, 5 and 15 minute load averages (or only the first), or "unknown" where the OS has none."""
    try:
        loads = os.getloadavg()
    except OSError:
        return "unknown"
    return " ".join(f"{x:.2f}" for x in loads[: 1 if one_minute else 3])


def arun(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop where installed, as `python -m gateway serve` uses, so servers and load generators run the same loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def serve_command(config: Path, port: int, http_port: int) -> list[str]:
    """`python -m gateway serve` with `config`, gRPC on `port` and HTTP on `http_port`."""
    serve = [sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    return [*serve, "--port", str(port), "--http-port", str(http_port)]


def stop(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM (a gateway drains), then SIGKILL if the process has not exited within `timeout_s`."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for(
    probe: Callable[[], T | None],
    *,
    what: str,
    timeout_s: float,
    process: subprocess.Popen[bytes] | None = None,
    interval_s: float = 0.2,
) -> T:
    """Call `probe` until it returns something other than None and return that; raise RuntimeError
    when `process` exits first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with status {process.returncode}")
        answer = probe()
        if answer is not None:
            return answer
        time.sleep(interval_s)
    raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")


def wait_port(port: int, *, what: str, timeout_s: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until something accepts TCP connections on 127.0.0.1:`port`."""

    def accepts() -> bool | None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return None

    wait_for(accepts, what=what, timeout_s=timeout_s, process=process, interval_s=0.05)


def wait_generate(
    target: str, request: Any, *, timeout_s: float = 60.0, process: subprocess.Popen[bytes] | None = None
) -> Any:
    """Until the gRPC server at `target` answers `request` with Generate; return that answer."""
    import grpc

    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        def answer() -> Any:
            try:
                return stub.Generate(request, timeout=1)
            except grpc.RpcError:
                return None

        return wait_for(answer, what=f"{target} to answer Generate", timeout_s=timeout_s, process=process)


def wait_serving(target: str, *, timeout_s: float = 120.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Until the gateway at `target` says SERVING on gRPC health."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        def serving() -> bool | None:
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
            except grpc.RpcError:
                return None
            return True if reply.status == health_pb2.HealthCheckResponse.SERVING else None

        wait_for(serving, what=f"the gateway at {target} to serve", timeout_s=timeout_s, process=process)
