"""What the gateway adds on top of gRPC itself.

Starts, in the same run, (a) the gateway with the instant echo backend and
(b) the same echo backend behind a bare grpc.aio server with no routing, each
pinned to core 0 where `taskset` exists. A load generator in its own process
(core 1) sends Generate calls open-loop at fixed offered rates for a fixed
duration; latency is measured from each call's scheduled send time, so a
server that falls behind is charged for the queue it builds. Prints achieved
rate, errors and p50/p99/p99.9 for each, the gateway's added p50/p99, and the
`import gateway` time. Asserts nothing.

    python scripts/bench_overhead.py [--rates 100 500 1000] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--loadgen", nargs=3, metavar=("TARGET", "RATE", "DURATION"), help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        target, rate, duration = args.loadgen
        print(json.dumps(_arun(_load(target, int(rate), float(duration)))))
    elif args.bare_server:
        _arun(_bare_server(args.bare_server))
    else:
        _run(args.rates, args.duration)


def _arun(coro: Any) -> Any:
    """uvloop where installed, as `python -m gateway serve` uses, so both servers run the same loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- orchestration ---------------------------------------------------------------------


def _run(rates: list[int], duration: float) -> None:
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, pinning: {_pinning_note()}")
    print(f"import gateway.server: {_import_ms():.0f} ms (median of 5, minus bare interpreter start)")
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"gateway": _start_gateway(Path(tmp)), "bare grpc.aio": _start_bare()}
        try:
            rows = []
            for rate in rates:
                for name, (_, target) in servers.items():
                    _load_in_process(target, min(rate, 50), 1.0)  # warm-up
                    stats = _load_in_process(target, rate, duration)
                    rows.append((name, rate, stats))
        finally:
            for process, _ in servers.values():
                process.send_signal(signal.SIGTERM)
                process.wait(30)
    _print(rows)


def _print(rows: list[tuple[str, int, dict[str, float]]]) -> None:
    print()
    print(f"{'server':<14} {'offered':>8} {'achieved':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}")
    by_rate: dict[int, dict[str, dict[str, float]]] = {}
    for name, rate, s in rows:
        by_rate.setdefault(rate, {})[name] = s
        cells = f"{s['qps']:>9.0f} {s['errors']:>7.0f} {s['p50']:>8.3f} {s['p99']:>8.3f} {s['p999']:>9.3f}"
        print(f"{name:<14} {rate:>8} {cells}")
    print()
    print(f"{'offered':>8} {'added p50 ms':>13} {'added p99 ms':>13}")
    for rate, pair in by_rate.items():
        gw, bare = pair["gateway"], pair["bare grpc.aio"]
        print(f"{rate:>8} {gw['p50'] - bare['p50']:>13.3f} {gw['p99'] - bare['p99']:>13.3f}")


def _pinning_note() -> str:
    return "server core 0, load generator core 1" if _taskset() else "none (taskset not found)"


def _taskset(core: int | None = None) -> list[str]:
    if shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(core)] if core is not None else ["taskset"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_gateway(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port, http_port = _free_port(), _free_port()
    config = tmp / "bench.toml"
    config.write_text('[local]\nbackend = "echo"\n[server]\nlog_level = "WARNING"\n')
    command = [*_taskset(0), sys.executable, "-m", "gateway", "serve", "--config", str(config)]
    command += ["--port", str(port), "--http-port", str(http_port)]
    process = subprocess.Popen(command, cwd=ROOT)
    target = f"127.0.0.1:{port}"
    _wait_ready(target)
    return process, target


def _start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen([*_taskset(0), sys.executable, __file__, "--bare-server", str(port)], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    _wait_ready(target)
    return process, target


def _wait_ready(target: str) -> None:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    deadline = time.monotonic() + 60
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        while time.monotonic() < deadline:
            try:
                stub.Generate(_request(pb), timeout=1)
                return
            except grpc.RpcError:
                time.sleep(0.2)
    raise RuntimeError(f"{target} did not answer within 60 s")


def _load_in_process(target: str, rate: int, duration: float) -> dict[str, float]:
    command = [*_taskset(1), sys.executable, __file__, "--loadgen", target, str(rate), str(duration)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def _import_ms() -> float:
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - started

    bare = statistics.median(run("pass") for _ in range(5))
    full = statistics.median(run("import gateway.server") for _ in range(5))
    return (full - bare) * 1000


# -- load generator (its own process) ---------------------------------------------------


def _request(pb: object) -> object:
    return pb.GenerateRequest(  # type: ignore[attr-defined]
        messages=[pb.ChatMessage(role="user", content="buy 100 AAPL at market")],  # type: ignore[attr-defined]
        max_tokens=16,
    )


async def _load(target: str, rate: int, duration: float) -> dict[str, float]:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    request = _request(pb)
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                await stub.Generate(request, timeout=10)
                latencies.append(time.perf_counter() - scheduled)
            except grpc.RpcError:
                errors += 1

        total = int(rate * duration)
        started = time.perf_counter()
        tasks = []
        for i in range(total):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"qps": len(latencies) / elapsed, "errors": errors, "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999)}


# -- the baseline: echo behind a bare grpc.aio server --------------------------------------


async def _bare_server(port: int) -> None:
    import grpc

    from gateway.contracts import BackendCall, Message, Role
    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc
    from local_models.echo import EchoBackend

    echo = EchoBackend()

    class Bare(pb_grpc.InferenceGatewayServicer):
        async def Generate(self, request, context):  # type: ignore[no-untyped-def] # noqa: N802
            call = BackendCall(
                "", tuple(Message(Role(m.role), m.content) for m in request.messages), request.max_tokens
            )
            completion = await echo.generate(call)
            return pb.GenerateResponse(text=completion.text, provider=completion.provider, model=completion.model)

    server = grpc.aio.server()
    pb_grpc.add_InferenceGatewayServicer_to_server(Bare(), server)  # type: ignore[abstract]
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace=1)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
