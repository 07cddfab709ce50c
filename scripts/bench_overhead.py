"""What the gateway adds on top of gRPC itself, and on top of a remote provider.

Part 1, `echo` (local path): starts, in the same run, (a) the gateway with the
instant echo backend and (b) the same echo backend behind a bare grpc.aio
server with no routing, each pinned to core 0 where `taskset` exists. A load
generator in its own process (core 1) sends Generate calls open-loop at fixed
offered rates for a fixed duration; latency is measured from each call's
scheduled send time, so a server that falls behind is charged for the queue it
builds. Prints achieved rate, errors and p50/p99/p99.9 for each, the gateway's
added p50/p99, and the `import gateway` time.

Part 2, `remote` (remote path): the OpenAI stand-in from tests/fakes runs as its
own process and is called (a) directly over HTTP, (b) through the gateway with
every request pinned to `openai/<model>`, and (c) through the LiteLLM proxy (one
worker, installed on first use into .venv-litellm) pointed at the same stand-in.
The gateway and LiteLLM run on core 0; the stand-in and the load generator share
core 1. The same open-loop load generator drives all three (gRPC for the
gateway, HTTP for the others). Prints each one's achieved rate, errors and
latencies, the latency each adds over the direct call, and the ratio
gateway/LiteLLM. The stand-in's own ceiling is measured first, so a figure that
it limits can be recognised.

Part 3, `doors` (the two front doors): the same echo backend answered (a) by a
bare grpc.aio server, (b) through the gateway's gRPC door, (c) by a bare aiohttp
server that returns a fixed chat completion, (d) through the gateway's
OpenAI-compatible HTTP door (POST /v1/chat/completions), and (e) by LiteLLM's
proxy answering from `mock_response` (LiteLLM's own instant backend). What each
door adds is measured over its own floor in the same run: gRPC door = (b) - (a),
HTTP door = (d) - (c), LiteLLM = (e) - (c).

Part 4, `overload` (scripts/overload.py, its own entry point too): goodput past
saturation per class (URGENT, NORMAL) from several generator processes, today's
defaults beside the old ones, on the local (echo) and remote paths, and a burst of
concurrent requests at the embedded model. Prints offered, good/s, refused, late
and p99 for each class.

The servers, load generators and counting these parts share are in
scripts/bench_harness.py; each part is its own script.

Part 5, `hedge` (scripts/bench_hedge.py): URGENT requests over the echo backend
with a heavy tail and the OpenAI stand-in, with [routing] hedge off and on: p50,
p99 and p99.9 of each, and the provider calls and tokens hedging cost.

Asserts nothing; prints figures, with the load average (the machine is shared).

    python scripts/bench_overhead.py [--only echo|remote|doors|keys|overload|hedge] [--rates 100 500 1000]
        [--remote-rates 10 25 100 500 1000] [--door-rates 100 500 1000] [--duration 5]
        [--overload-deadline-ms 500] [--overload-duration 5] [--ramp-duration 2] [--burst 96]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_harness as harness
from benchlib import (
    ROOT,
    arun,
    free_port,
    load_average,
    stop,
    taskset,
    wait_port,
)

Stats = dict[str, Any]
Row = tuple[str, int, Stats]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only",
        choices=("echo", "remote", "doors", "keys", "overload", "hedge"),
        help="run one part (default: all)",
    )
    parser.add_argument("--rates", type=int, nargs="+", default=[100, 500, 1000], help="offered QPS, echo part")
    parser.add_argument(
        "--remote-rates", type=int, nargs="+", default=[10, 25, 100, 500, 1000], help="offered QPS, remote part"
    )
    parser.add_argument("--door-rates", type=int, nargs="+", default=[100, 500, 1000], help="offered QPS, doors part")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    parser.add_argument("--litellm-spec", default=harness.LITELLM_SPEC, help="pip requirement for .venv-litellm")
    parser.add_argument("--overload-deadline-ms", type=float, default=500.0, help="each call's deadline, overload part")
    parser.add_argument("--overload-duration", type=float, default=5.0, help="seconds per rate, overload part")
    parser.add_argument("--ramp-duration", type=float, default=2.0, help="seconds per ramp step, overload part")
    parser.add_argument("--burst", type=int, default=96, help="concurrent requests to the embedded model")
    parser.add_argument("--bare-server", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-http", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        arun(_bare_server(args.bare_server))
    elif args.bare_http:
        arun(_bare_http(args.bare_http))
    else:
        _run_parts(args)


def _run_parts(args: argparse.Namespace) -> None:
    """Every part, or the one `--only` names, in this order."""
    print(_machine_note())
    if args.only in (None, "echo"):
        _run(args.rates, args.duration)
    if args.only in (None, "remote"):
        _run_remote(args.remote_rates, args.duration, args.litellm_spec)
    if args.only in (None, "doors"):
        _run_doors(args.door_rates, args.duration, args.litellm_spec)
    if args.only in (None, "keys"):
        import bench_keys

        bench_keys.run(bench_keys.Settings(duration_s=args.duration))
    if args.only in (None, "overload"):
        import overload

        overload.run(
            overload.Settings(
                deadline_s=args.overload_deadline_ms / 1000,
                duration_s=args.overload_duration,
                ramp_s=args.ramp_duration,
                burst=args.burst,
            )
        )
    if args.only in (None, "hedge"):  # scripts/bench_hedge.py: URGENT p99 with and without hedging, its tokens
        import bench_hedge

        bench_hedge.run(bench_hedge.Settings(duration_s=max(args.duration, 5.0)))
    print(f"\nload average at the end: {load_average()}")


# -- orchestration: echo (local path) ---------------------------------------------------------


def _run(rates: list[int], duration: float) -> None:
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}, pinning: {_pinning_note()}")
    print(f"import gateway.app.server: {_import_ms():.0f} ms (median of 5, minus bare interpreter start)")
    with tempfile.TemporaryDirectory() as tmp:
        servers = {"gateway": harness.start_gateway(Path(tmp)), "bare grpc.aio": _start_bare()}
        try:
            rows = []
            for rate in rates:
                for name, (_, target) in servers.items():
                    harness.load_in_process(target, min(rate, 50), 1.0)  # warm-up
                    stats = harness.load_in_process(target, rate, duration)
                    rows.append((name, rate, stats))
        finally:
            for process, _ in servers.values():
                stop(process)
    _print(rows)


def _print_table(rows: list[Row], width: int, *, mark_saturated: bool = False) -> dict[int, dict[str, Stats]]:
    """One line per (server, rate); returns the stats by rate, then by server."""
    print()
    head = f"{'offered':>8} {'achieved':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}"
    print(f"{'server':<{width}} {head}")
    by_rate: dict[int, dict[str, Stats]] = {}
    for name, rate, s in rows:
        by_rate.setdefault(rate, {})[name] = s
        cells = f"{s['qps']:>9.0f} {s['errors']:>7.0f} {s['p50']:>8.3f} {s['p99']:>8.3f} {s['p999']:>9.3f}"
        note = "  saturated" if mark_saturated and _saturated(rate, s) else ""
        print(f"{name:<{width}} {rate:>8} {cells}{note}")
    return by_rate


def _print(rows: list[Row]) -> None:
    by_rate = _print_table(rows, 14)
    print()
    print(f"{'offered':>8} {'added p50 ms':>13} {'added p99 ms':>13}")
    for rate, pair in by_rate.items():
        gw, bare = pair["gateway"], pair["bare grpc.aio"]
        print(f"{rate:>8} {gw['p50'] - bare['p50']:>13.3f} {gw['p99'] - bare['p99']:>13.3f}")


def _pinning_note() -> str:
    return "server core 0, load generator core 1" if taskset() else "none (taskset not found)"


def _start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([*taskset(0), sys.executable, __file__, "--bare-server", str(port)], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    harness.wait_ready(target, process)
    return process, target


def _import_ms() -> float:
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - started

    bare = statistics.median(run("pass") for _ in range(5))
    full = statistics.median(run("import gateway.app.server") for _ in range(5))
    return (full - bare) * 1000


# -- orchestration: the two front doors (gRPC and OpenAI-compatible HTTP) against LiteLLM ---------


def _run_doors(rates: list[int], duration: float, litellm_spec: str) -> None:
    print()
    print("== front doors over the echo backend: gRPC and HTTP, each against its bare floor; LiteLLM (mock) ==")
    print(f"load average at start: {load_average()}")
    print(f"pinning: {_pinning_note()}")
    litellm_bin, litellm_note = harness.ensure_litellm(litellm_spec)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started: list[subprocess.Popen[bytes]] = []
        try:
            http_port = free_port()
            gateway, grpc_target = harness.start_gateway(tmp, http_port)
            http_origin = f"http://127.0.0.1:{http_port}"
            started.append(gateway)
            bare_grpc, bare_target = _start_bare()
            started.append(bare_grpc)
            bare_http, bare_origin = _start_bare_http()
            started.append(bare_http)
            targets = {
                "bare grpc.aio": (bare_target, ""),
                "gateway gRPC": (grpc_target, ""),
                "bare aiohttp": (f"{bare_origin}/v1/chat/completions", harness.ECHO_MODEL),
                "gateway HTTP": (f"{http_origin}/v1/chat/completions", harness.ECHO_MODEL),
            }
            if litellm_bin is not None:
                litellm = harness.start_litellm(litellm_bin, tmp, "", mock=True)
                if isinstance(litellm, str):
                    litellm_note = litellm
                else:
                    started.append(litellm[0])
                    targets["LiteLLM (mock)"] = (f"{litellm[1]}/v1/chat/completions", harness.REMOTE_MODEL)
            print(f"LiteLLM: {litellm_note}")
            rows: list[Row] = []
            for rate in rates:
                for name, (address, pin) in targets.items():
                    harness.load_in_process(address, min(rate, 50), 1.0, pin)  # warm-up
                    stats = harness.load_in_process(address, rate, duration, pin)
                    rows.append((name, rate, stats))
                    print(
                        f"  {name:<15} {rate:>5} QPS offered: {stats['qps']:.0f} achieved, "
                        f"load average {load_average()}",
                        flush=True,
                    )
        finally:
            for process in reversed(started):
                stop(process)
    _print_doors(rows)
    print(f"load average after the doors part: {load_average()}")


def _print_doors(rows: list[Row]) -> None:
    by_rate = _print_table(rows, 15, mark_saturated=True)
    print()
    print("added over the floor, ms (p50 / p99): gRPC door over bare grpc.aio; HTTP door and LiteLLM over bare aiohttp")
    print(
        f"{'offered':>8} {'gRPC p50':>9} {'gRPC p99':>9} {'HTTP p50':>9} {'HTTP p99':>9}"
        f" {'LiteLLM p50':>12} {'LiteLLM p99':>12}"
    )
    for rate, by_name in by_rate.items():
        grpc_gw, grpc_bare = by_name["gateway gRPC"], by_name["bare grpc.aio"]
        http_gw, http_bare = by_name["gateway HTTP"], by_name["bare aiohttp"]
        line = f"{rate:>8} {grpc_gw['p50'] - grpc_bare['p50']:>9.3f} {grpc_gw['p99'] - grpc_bare['p99']:>9.3f}"
        line += f" {http_gw['p50'] - http_bare['p50']:>9.3f} {http_gw['p99'] - http_bare['p99']:>9.3f}"
        lite = by_name.get("LiteLLM (mock)")
        if lite is not None:
            line += f" {lite['p50'] - http_bare['p50']:>12.3f} {lite['p99'] - http_bare['p99']:>12.3f}"
        print(line)


def _start_bare_http() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([*taskset(0), sys.executable, __file__, "--bare-http", str(port)], cwd=ROOT)
    wait_port(port, what="the bare aiohttp server", process=process)
    return process, f"http://127.0.0.1:{port}"


# -- orchestration: remote path (direct vs gateway vs LiteLLM) ------------------------------------


def _run_remote(rates: list[int], duration: float, litellm_spec: str) -> None:
    print()
    print("== remote path: OpenAI stand-in called directly, through the gateway, through LiteLLM ==")
    print(f"load average at start: {load_average()}")
    print(f"pinning: {_remote_pinning_note()}")
    litellm_bin, litellm_note = harness.ensure_litellm(litellm_spec)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        targets: dict[str, _Target] = {}
        try:
            stand_in, origin = harness.start_stand_in()
            targets["direct"] = _Target(stand_in, f"{origin}/v1/chat/completions")
            count, cpu = harness.stand_in_count(origin), harness.cpu_s(stand_in.pid)
            ceiling = harness.stand_in_ceiling(origin)
            per_request = (harness.cpu_s(stand_in.pid) - cpu) * 1000 / max(1, harness.stand_in_count(origin) - count)
            print(
                f"stand-in ceiling: {ceiling['qps']:.0f} req/s, p50 {ceiling['p50']:.2f} ms "
                f"(closed loop, {ceiling['in_flight']:.0f} in flight, client on core 0, stand-in alone on core 1); "
                f"stand-in CPU {per_request:.2f} ms per request"
            )
            gateway, gateway_target = harness.start_remote_gateway(tmp, origin)
            targets["gateway"] = _Target(gateway, gateway_target, f"openai/{harness.REMOTE_MODEL}")
            if litellm_bin is not None:
                binary = litellm_bin

                def start_litellm() -> tuple[subprocess.Popen[bytes], str]:
                    started = harness.start_litellm(binary, tmp, origin)
                    if isinstance(started, str):
                        raise RuntimeError(started)
                    return started[0], f"{started[1]}/v1/chat/completions"

                try:
                    process, address = start_litellm()
                    targets["LiteLLM"] = _Target(process, address, restart=start_litellm)
                except RuntimeError as exc:
                    litellm_note = str(exc)
            print(f"LiteLLM: {litellm_note}")
            for target in targets.values():
                harness.load_in_process(target.address, 10, 2.0, target.pin)  # first use: lazy imports, connections
                harness.wait_quiet(origin)
            rows = _remote_rows(rates, duration, targets, origin)
        finally:
            for target in reversed(targets.values()):
                target.stop()
    _print_remote(rows, "LiteLLM" in targets)
    print(f"load average after the remote part: {load_average()}")


@dataclass
class _Target:
    process: subprocess.Popen[bytes]  # its CPU time is charged to this target (direct: the stand-in)
    address: str  # http://... for HTTP targets, host:port for the gateway's gRPC
    pin: str = ""  # the gateway request's `model`
    restart: Callable[[], tuple[subprocess.Popen[bytes], str]] | None = None

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _remote_rows(rates: list[int], duration: float, targets: dict[str, _Target], origin: str) -> list[Row]:
    rows: list[Row] = []
    for rate in rates:
        for name, target in targets.items():
            harness.load_in_process(target.address, min(rate, 20), 1.0, target.pin)  # warm-up
            harness.wait_quiet(origin)
            before, cpu_before = harness.stand_in_count(origin), harness.cpu_s(target.process.pid)
            stats = harness.load_in_process(target.address, rate, duration, target.pin)
            drain_s = harness.wait_quiet(origin, harness.DRAIN_LIMIT_S)
            stats["drain_s"] = drain_s
            stats["upstream"] = harness.stand_in_count(origin) - before
            cpu = harness.cpu_s(target.process.pid) - cpu_before
            stats["cpu_ms"] = cpu * 1000 / stats["upstream"] if stats["upstream"] else float("nan")
            stats["restarted"] = drain_s >= harness.DRAIN_LIMIT_S and target.restart is not None
            rows.append((name, rate, stats))
            note = f"  {name:<8} {rate:>5} QPS offered: {stats['qps']:.0f} achieved, load average {load_average()}"
            if stats["restarted"] and target.restart is not None:
                note += f"; still forwarding abandoned requests after {harness.DRAIN_LIMIT_S:.0f} s: stopped"
                target.stop(kill=True)
                if (rate, name) != (rates[-1], list(targets)[-1]):  # no run follows the last one
                    target.process, target.address = target.restart()
                    harness.wait_quiet(origin)
                    note += " and restarted"
            print(note, flush=True)
    return rows


def _print_remote(rows: list[Row], with_litellm: bool) -> None:
    print()
    header = f"{'target':<8} {'offered':>8} {'achieved':>9} {'errors':>7} {'upstream':>9}"
    print(f"{header} {'p50 ms':>9} {'p99 ms':>9} {'p99.9 ms':>9} {'drain s':>8} {'cpu ms/req':>11}")
    by_rate: dict[int, dict[str, Stats]] = {}
    for name, rate, s in rows:
        by_rate.setdefault(rate, {})[name] = s
        cells = f"{s['qps']:>9.0f} {s['errors']:>7.0f} {s['upstream']:>9.0f}"
        drain = f"{s['drain_s']:.0f}+ (r)" if s["restarted"] else f"{s['drain_s']:.1f}"
        cells += f" {s['p50']:>9.3f} {s['p99']:>9.3f} {s['p999']:>9.3f} {drain:>8} {s['cpu_ms']:>11.2f}"
        print(f"{name:<8} {rate:>8} {cells}{'  saturated' if _saturated(rate, s) else ''}")
        if s["errors"]:
            kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(s["error_kinds"].items()))
            print(f"{'':<8} {'':>8}   errors: {kinds}")
    print("(upstream: requests the stand-in answered for that run, counted until it went quiet;")
    print(" drain s: how long after the load generator finished the stand-in still received requests;")
    limit = harness.DRAIN_LIMIT_S
    print(f"   (r): the proxy was still forwarding requests its callers had given up on after {limit:.0f} s")
    print("   and was stopped (and restarted), so that backlog would not load the next run;")
    print(" cpu ms/req: CPU time of the process under test (direct: the stand-in) per upstream request;")
    print(" saturated: achieved under 95% of offered, or errors)")
    print()
    print("added latency over the direct call, ms (p50 / p99); ratio = gateway / LiteLLM")
    line = f"{'offered':>8} {'gateway p50':>12} {'gateway p99':>12}"
    if with_litellm:
        line += f" {'LiteLLM p50':>12} {'LiteLLM p99':>12} {'ratio p50':>10} {'ratio p99':>10} {'rate ratio':>11}"
    print(line)
    for rate, by_name in by_rate.items():
        direct, gw = by_name["direct"], by_name["gateway"]
        gw50, gw99 = gw["p50"] - direct["p50"], gw["p99"] - direct["p99"]
        line = f"{rate:>8} {gw50:>12.3f} {gw99:>12.3f}"
        if with_litellm and "LiteLLM" in by_name:
            lite = by_name["LiteLLM"]
            lite50, lite99 = lite["p50"] - direct["p50"], lite["p99"] - direct["p99"]
            rate_ratio = gw["qps"] / lite["qps"] if lite["qps"] > 0 else float("nan")
            line += f" {lite50:>12.3f} {lite99:>12.3f} {_ratio(gw50, lite50):>10} {_ratio(gw99, lite99):>10}"
            line += f" {rate_ratio:>11.2f}"
        if _saturated(rate, direct):
            line += "  (direct call saturated: the baseline itself queues)"
        print(line)
    print("(rate ratio: achieved rate gateway / LiteLLM; a ratio is '-' where an added latency is not positive)")


def _saturated(rate: int, stats: Stats) -> bool:
    return bool(stats["qps"] < 0.95 * rate or stats["errors"] > 0)


def _ratio(numerator: float, denominator: float) -> str:
    if numerator <= 0 or denominator <= 0:
        return "-"
    return f"{numerator / denominator:.4f}"


def _remote_pinning_note() -> str:
    if not taskset():
        return "none (taskset not found): every process shares all cores"
    return "gateway and LiteLLM on core 0 (one at a time under load); OpenAI stand-in and load generator on core 1"


def _machine_note() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
                break
    except OSError:
        pass
    return f"host: {model}, {os.cpu_count()} cores{memory}; load average (1/5/15 min) {load_average()}"


# -- load generator (its own process) ---------------------------------------------------


# -- the baseline: echo behind a bare grpc.aio server --------------------------------------


async def _bare_server(port: int) -> None:
    import grpc

    from gateway.core.contracts import BackendCall, Message, Role
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


async def _bare_http(port: int) -> None:
    """The HTTP floor: aiohttp parsing the request JSON and answering one fixed chat completion."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        text = body["messages"][-1]["content"]
        return web.json_response(
            {
                "id": "chatcmpl-bare",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", harness.ECHO_MODEL),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


# -- the OpenAI stand-in as a process ---------------------------------------------------------


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
