"""Cache-hit latency end to end over gRPC, and what the token ledger costs per request, SQLite vs Redis.

Part 1 starts, in the same run, a bare grpc.aio server around the echo backend
(the floor: gRPC itself) and the gateway (echo backend) with its state on
SQLite and on Redis, each with and without the in-process front tier
([cache] memory_entries). Servers are pinned to core 0 and the load generator
to core 1 where `taskset` exists. After one priming call, the same
deterministic request is sent N times, one at a time, so every measured call
is a cache hit (checked: the tier of each answer is counted); it prints
p50/p99/p99.9 per server.

Part 1b runs the same hits in this process, without gRPC: request conversion, the
recording and cache decorators, the metrics and usage observers, and the
response conversion; what the cache path itself costs.

Part 2 measures, in this process, one remote request's ledger work
(reserve the estimate, then reconcile to the reported usage) on the SQLite
ledger (WAL file) and the Redis ledger: sequentially (latency per request) and
with 32 requests in flight (requests per second).

Needs redis-server on PATH (apt-get install -y redis-server). Asserts nothing.

    python scripts/bench_cache.py [--calls 3000] [--ledger-requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchlib import ROOT, arun, free_port, serve_command, taskset, wait_generate, wait_port

DAY = "2026-11-26"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000, help="cache hits measured per server")
    parser.add_argument("--ledger-requests", type=int, default=2000, help="requests per ledger measurement")
    parser.add_argument("--loadgen", nargs=2, metavar=("TARGET", "CALLS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        target, calls = args.loadgen
        print(json.dumps(arun(_hits(target, int(calls)))))
        return
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, pinning: {_pinning_note()}")
    with tempfile.TemporaryDirectory() as tmp, _RedisServer(Path(tmp)) as redis_url:
        _part_one(Path(tmp), redis_url, args.calls)
        _part_one_in_process(Path(tmp), redis_url, args.calls)
        _part_two(Path(tmp), redis_url, args.ledger_requests)


# -- part 1: cache hits over gRPC ---------------------------------------------------------------


def _part_one(tmp: Path, redis_url: str, calls: int) -> None:
    configs = {
        "gateway, sqlite + front tier": ("sqlite", 4096),
        "gateway, sqlite only": ("sqlite", 0),
        "gateway, redis + front tier": ("redis", 4096),
        "gateway, redis only": ("redis", 0),
    }
    rows: list[tuple[str, dict[str, float]]] = []
    port = free_port()
    bare = _start([sys.executable, str(ROOT / "scripts" / "bench_overhead.py"), "--bare-server", str(port)], port)
    try:
        rows.append(("bare grpc.aio (echo, no cache)", _measure(bare[1], calls)))
    finally:
        _stop(bare[0])
    for name, (backend, front) in configs.items():
        workdir = tmp / name.replace(" ", "_").replace(",", "").replace("+", "and")
        workdir.mkdir()
        config = workdir / "bench.toml"
        config.write_text(
            f'cache_dir = "{workdir}"\n[local]\nbackend = "echo"\n[server]\nlog_level = "WARNING"\n'
            f'[state]\nbackend = "{backend}"\nurl = "{redis_url}"\nkey_prefix = "bench-{front}:"\n'
            f"[cache]\nmemory_entries = {front}\n"
        )
        port = free_port()
        process, target = _start(serve_command(config, port, free_port()), port)
        try:
            rows.append((name, _measure(target, calls)))
        finally:
            _stop(process)
    print()
    print(f"cache hits over gRPC, one call in flight, {calls} calls each")
    print(f"{'server':<32} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'mean ms':>8} {'hits':>6}")
    for name, s in rows:
        hits = "-" if name.startswith("bare") else f"{s['hits']:.0f}"
        print(f"{name:<32} {s['p50']:>8.3f} {s['p99']:>8.3f} {s['p999']:>9.3f} {s['mean']:>8.3f} {hits:>6}")


def _start(command: list[str], port: int) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server pinned to core 0 and wait until it answers Generate on `port`."""
    from gateway.v1 import gateway_pb2 as pb

    process = subprocess.Popen([*taskset(0), *command], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    wait_generate(target, _request(pb), process=process)
    return process, target


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def _measure(target: str, calls: int) -> dict[str, float]:
    command = [*taskset(1), sys.executable, __file__, "--loadgen", target, str(calls)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def _request(pb: Any) -> Any:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="is AAPL trending up? answer up or down")])


async def _hits(target: str, calls: int) -> dict[str, float]:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    request = _request(pb)
    latencies: list[float] = []
    hits = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        for _ in range(200):  # prime the entry, then warm the channel and both processes
            await stub.Generate(request, timeout=10)
        for _ in range(calls):
            started = time.perf_counter()
            response = await stub.Generate(request, timeout=10)
            latencies.append(time.perf_counter() - started)
            hits += response.tier == pb.TIER_CACHE
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000

    return {
        "p50": pct(0.5),
        "p99": pct(0.99),
        "p999": pct(0.999),
        "mean": statistics.fmean(latencies) * 1000,
        "hits": hits,
    }


# -- part 1b: the same hits without gRPC -------------------------------------------------------------


def _part_one_in_process(tmp: Path, redis_url: str, calls: int) -> None:
    rows = []
    for backend, front in (("sqlite", 4096), ("sqlite", 0), ("redis", 4096), ("redis", 0)):
        name = f"{backend} {'+ front tier' if front else 'only'}"
        rows.append((name, arun(_in_process_hits(tmp / f"inproc-{backend}-{front}", redis_url, backend, front, calls))))
    print()
    print(f"cache hits in process (no gRPC), {calls} calls each")
    print(f"{'state':<22} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9}")
    for name, s in rows:
        print(f"{name:<22} {s['p50']:>8.0f} {s['p99']:>8.0f} {s['p999']:>9.0f}")


async def _in_process_hits(workdir: Path, redis_url: str, backend: str, front: int, calls: int) -> dict[str, float]:
    from gateway.api import convert
    from gateway.app.front import build_front
    from gateway.config import load_config
    from gateway.observe.metrics import Metrics
    from gateway.routing.router import Router
    from gateway.routing.tasks import ChainedTasks, ConfigTasks
    from gateway.state.open import open_state
    from gateway.v1 import gateway_pb2 as pb
    from local_models.echo import EchoBackend

    overrides = {
        "cache_dir": str(workdir),
        "local.backend": "echo",
        "state.backend": backend,
        "state.url": redis_url,
        "state.key_prefix": f"inproc-{front}:",
        "cache.memory_entries": front,
    }
    config = load_config(None, {}, overrides)
    state = open_state(config)
    tasks = ChainedTasks(ConfigTasks(config.tasks))
    gateway = build_front(config, Router(EchoBackend(), tasks, config.routing), tasks, state, Metrics())
    gateway.start()
    message = _request(pb)
    latencies = []
    try:
        for i in range(calls + 200):
            await asyncio.sleep(0)  # let the usage writer run between calls, as it would between RPCs
            started = time.perf_counter()
            request = convert.request_from_proto(message, default_max_tokens=256, timeout_s=10)
            result = await gateway.answerer.generate(request)
            convert.response_to_proto(result)
            if i >= 200:
                latencies.append(time.perf_counter() - started)
    finally:
        await gateway.aclose()
        await state.aclose()
    latencies.sort()
    return {
        "p50": latencies[len(latencies) // 2] * 1e6,
        "p99": latencies[int(0.99 * len(latencies))] * 1e6,
        "p999": latencies[int(0.999 * len(latencies))] * 1e6,
    }


# -- part 2: the ledger's cost per request -------------------------------------------------------------


def _part_two(tmp: Path, redis_url: str, requests: int) -> None:
    rows = arun(_ledgers(tmp, redis_url, requests))
    print()
    print(f"token ledger, one remote request = reserve + reconcile, {requests} requests each")
    print(f"{'ledger':<10} {'p50 us':>8} {'p99 us':>8} {'mean us':>8} {'req/s, 32 in flight':>20}")
    for name, s in rows:
        print(f"{name:<10} {s['p50']:>8.0f} {s['p99']:>8.0f} {s['mean']:>8.0f} {s['rps']:>20.0f}")


async def _ledgers(tmp: Path, redis_url: str, requests: int) -> list[tuple[str, dict[str, float]]]:
    from gateway.state.budget.redis import RedisLedger
    from gateway.state.budget.sqlite import SqliteLedger
    from gateway.state.redis_client import open_redis

    rows = []
    sqlite = SqliteLedger(tmp / "bench-ledger.sqlite3")
    try:
        rows.append(("sqlite", await _ledger_run(sqlite, requests)))
    finally:
        await sqlite.aclose()
    client = open_redis(redis_url)
    try:
        rows.append(("redis", await _ledger_run(RedisLedger(client, prefix="bench-ledger:"), requests)))
    finally:
        await client.aclose()
    return rows


async def _ledger_run(ledger: Any, requests: int) -> dict[str, float]:
    async def one(i: int) -> None:
        reservation = await ledger.reserve(f"p{i % 3}", 300, day=DAY, limit=None)
        await ledger.reconcile(reservation, 120)

    for i in range(100):  # warm-up: open the file / the connections
        await one(i)
    latencies = []
    for i in range(requests):
        started = time.perf_counter()
        await one(i)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    rps = await _throughput(one, requests, 32)
    return {
        "p50": latencies[len(latencies) // 2] * 1e6,
        "p99": latencies[int(0.99 * len(latencies))] * 1e6,
        "mean": statistics.fmean(latencies) * 1e6,
        "rps": rps,
    }


async def _throughput(one: Callable[[int], Awaitable[None]], requests: int, in_flight: int) -> float:
    queue = iter(range(requests))

    async def worker() -> None:
        for i in queue:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return requests / (time.perf_counter() - started)


# -- plumbing -------------------------------------------------------------------------------------------


class _RedisServer:
    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server not found: apt-get install -y redis-server")
        port = free_port()
        command = [*taskset(0), binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
        self._process = subprocess.Popen([*command, "--dir", str(self._workdir)], stdout=subprocess.DEVNULL)
        wait_port(port, what="redis-server", process=self._process)
        return f"redis://127.0.0.1:{port}/0"

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


def _pinning_note() -> str:
    return "servers and redis core 0, load generator core 1" if taskset() else "none (taskset not found)"


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
