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

Part 4, `overload` (scripts/overload.py): goodput past saturation. Each call
carries a deadline; a short ramp finds the rate the gateway saturates at, then
1x, 2x and 4x that rate are offered, on the local (echo) path and on the remote
path (with LiteLLM beside it at the same rates), and a burst of concurrent
requests is sent to the embedded model. Prints offered, answered within
deadline, refused, late and p99 for each.

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
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchlib import (
    ROOT,
    arun,
    free_port,
    load_average,
    serve_command,
    stop,
    taskset,
    wait_for,
    wait_generate,
    wait_port,
)

LITELLM_VENV = ROOT / ".venv-litellm"
LITELLM_SPEC = "litellm[proxy]==1.108.7"  # the release the recorded figures were taken with
REMOTE_MODEL = "gpt-test"  # the model name the stand-in is asked for
PROVIDER_KEY = "sk-bench-not-a-real-key"  # given to the gateway and LiteLLM for the stand-in
LITELLM_MASTER_KEY = "sk-bench-master-key"  # loopback only
PROMPT = "buy 100 AAPL at market"
MAX_TOKENS = 16
CALL_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 180.0

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
    parser.add_argument("--litellm-spec", default=LITELLM_SPEC, help="pip requirement for .venv-litellm")
    parser.add_argument("--overload-deadline-ms", type=float, default=500.0, help="each call's deadline, overload part")
    parser.add_argument("--overload-duration", type=float, default=5.0, help="seconds per rate, overload part")
    parser.add_argument("--ramp-duration", type=float, default=2.0, help="seconds per ramp step, overload part")
    parser.add_argument("--burst", type=int, default=96, help="concurrent requests to the embedded model")
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--loadgen", nargs=3, metavar=("TARGET", "RATE", "DURATION"), help=argparse.SUPPRESS)
    parser.add_argument("--pin", default="", help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bare-http", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stand-in", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", nargs=2, metavar=("URL", "DURATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        target, rate, duration = args.loadgen
        print(json.dumps(arun(_load(target, int(rate), float(duration), args.pin, args.deadline))))
    elif args.bare_server:
        arun(_bare_server(args.bare_server))
    elif args.bare_http:
        arun(_bare_http(args.bare_http))
    elif args.stand_in:
        arun(_stand_in())
    elif args.ceiling:
        url, duration = args.ceiling
        print(json.dumps(arun(_closed_loop(url, float(duration)))))
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
                litellm_spec=args.litellm_spec,
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


def _start_gateway(tmp: Path, http_port: int = 0) -> tuple[subprocess.Popen[bytes], str]:
    """The echo gateway on core 0, serving gRPC (its target is returned) and HTTP on `http_port` (0: any)."""
    port = free_port()
    config = tmp / "bench.toml"
    # Every request reaches the router (no response cache), with its own state folder.
    config.write_text(
        f'state_dir = "{tmp / "echo-state"}"\n[local]\nbackend = "echo"\n[server]\nlog_level = "WARNING"\n'
        "[cache]\nenabled = false\n"
    )
    process = subprocess.Popen([*taskset(0), *serve_command(config, port, http_port or free_port())], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    _wait_ready(target, process)
    return process, target


def _start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([*taskset(0), sys.executable, __file__, "--bare-server", str(port)], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    _wait_ready(target, process)
    return process, target


def _wait_ready(target: str, process: subprocess.Popen[bytes], model: str = "") -> Any:
    """Block until `target` answers one Generate call (pinned to `model` when given); return that answer."""
    from gateway.v1 import gateway_pb2 as pb

    return wait_generate(target, _request(pb, model), process=process)


def _load_in_process(
    target: str, rate: int, duration: float, pin: str = "", core: int = 1, deadline_s: float = 0.0
) -> Stats:
    """Open-loop load from its own process; `deadline_s` (0: CALL_TIMEOUT_S) is each call's deadline."""
    command = [*taskset(core), sys.executable, __file__, "--loadgen", target, str(rate), str(duration)]
    if pin:
        command += ["--pin", pin]
    if deadline_s:
        command += ["--deadline", str(deadline_s)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def _import_ms() -> float:
    def run(code: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
        return time.perf_counter() - started

    bare = statistics.median(run("pass") for _ in range(5))
    full = statistics.median(run("import gateway.app.server") for _ in range(5))
    return (full - bare) * 1000


# -- orchestration: the two front doors (gRPC and OpenAI-compatible HTTP) against LiteLLM ---------

ECHO_MODEL = "echo"  # the echo backend's model name: what an HTTP client puts in `model`


def _run_doors(rates: list[int], duration: float, litellm_spec: str) -> None:
    print()
    print("== front doors over the echo backend: gRPC and HTTP, each against its bare floor; LiteLLM (mock) ==")
    print(f"load average at start: {load_average()}")
    print(f"pinning: {_pinning_note()}")
    litellm_bin, litellm_note = _ensure_litellm(litellm_spec)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        started: list[subprocess.Popen[bytes]] = []
        try:
            http_port = free_port()
            gateway, grpc_target = _start_gateway(tmp, http_port)
            http_origin = f"http://127.0.0.1:{http_port}"
            started.append(gateway)
            bare_grpc, bare_target = _start_bare()
            started.append(bare_grpc)
            bare_http, bare_origin = _start_bare_http()
            started.append(bare_http)
            targets = {
                "bare grpc.aio": (bare_target, ""),
                "gateway gRPC": (grpc_target, ""),
                "bare aiohttp": (f"{bare_origin}/v1/chat/completions", ECHO_MODEL),
                "gateway HTTP": (f"{http_origin}/v1/chat/completions", ECHO_MODEL),
            }
            if litellm_bin is not None:
                litellm = _start_litellm(litellm_bin, tmp, "", mock=True)
                if isinstance(litellm, str):
                    litellm_note = litellm
                else:
                    started.append(litellm[0])
                    targets["LiteLLM (mock)"] = (f"{litellm[1]}/v1/chat/completions", REMOTE_MODEL)
            print(f"LiteLLM: {litellm_note}")
            rows: list[Row] = []
            for rate in rates:
                for name, (address, pin) in targets.items():
                    _load_in_process(address, min(rate, 50), 1.0, pin)  # warm-up
                    stats = _load_in_process(address, rate, duration, pin)
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
    litellm_bin, litellm_note = _ensure_litellm(litellm_spec)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        targets: dict[str, _Target] = {}
        try:
            stand_in, origin = _start_stand_in()
            targets["direct"] = _Target(stand_in, f"{origin}/v1/chat/completions")
            count, cpu = _stand_in_count(origin), _cpu_s(stand_in.pid)
            ceiling = _stand_in_ceiling(origin)
            per_request = (_cpu_s(stand_in.pid) - cpu) * 1000 / max(1, _stand_in_count(origin) - count)
            print(
                f"stand-in ceiling: {ceiling['qps']:.0f} req/s, p50 {ceiling['p50']:.2f} ms "
                f"(closed loop, {ceiling['in_flight']:.0f} in flight, client on core 0, stand-in alone on core 1); "
                f"stand-in CPU {per_request:.2f} ms per request"
            )
            gateway, gateway_target = _start_remote_gateway(tmp, origin)
            targets["gateway"] = _Target(gateway, gateway_target, f"openai/{REMOTE_MODEL}")
            if litellm_bin is not None:
                binary = litellm_bin

                def start_litellm() -> tuple[subprocess.Popen[bytes], str]:
                    started = _start_litellm(binary, tmp, origin)
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
                _load_in_process(target.address, 10, 2.0, target.pin)  # first use: lazy imports, connections
                _wait_quiet(origin)
            rows = _remote_rows(rates, duration, targets, origin)
        finally:
            for target in reversed(targets.values()):
                target.stop()
    _print_remote(rows, "LiteLLM" in targets)
    print(f"load average after the remote part: {load_average()}")


DRAIN_LIMIT_S = 20.0  # a proxy still forwarding abandoned requests after this is restarted (LiteLLM)


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
            _load_in_process(target.address, min(rate, 20), 1.0, target.pin)  # warm-up
            _wait_quiet(origin)
            before, cpu_before = _stand_in_count(origin), _cpu_s(target.process.pid)
            stats = _load_in_process(target.address, rate, duration, target.pin)
            drain_s = _wait_quiet(origin, DRAIN_LIMIT_S)
            stats["drain_s"] = drain_s
            stats["upstream"] = _stand_in_count(origin) - before
            cpu = _cpu_s(target.process.pid) - cpu_before
            stats["cpu_ms"] = cpu * 1000 / stats["upstream"] if stats["upstream"] else float("nan")
            stats["restarted"] = drain_s >= DRAIN_LIMIT_S and target.restart is not None
            rows.append((name, rate, stats))
            note = f"  {name:<8} {rate:>5} QPS offered: {stats['qps']:.0f} achieved, load average {load_average()}"
            if stats["restarted"] and target.restart is not None:
                note += f"; still forwarding abandoned requests after {DRAIN_LIMIT_S:.0f} s: stopped"
                target.stop(kill=True)
                if (rate, name) != (rates[-1], list(targets)[-1]):  # no run follows the last one
                    target.process, target.address = target.restart()
                    _wait_quiet(origin)
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
    print(f"   (r): the proxy was still forwarding requests its callers had given up on after {DRAIN_LIMIT_S:.0f} s")
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


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and its live descendants (0 where /proc is missing)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


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


def _start_stand_in() -> tuple[subprocess.Popen[bytes], str]:
    command = [*taskset(1), sys.executable, __file__, "--stand-in"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    stdout: IO[bytes] | None = process.stdout
    origin = stdout.readline().decode().strip() if stdout is not None else ""
    if not origin.startswith("http://"):
        process.kill()
        raise RuntimeError("the OpenAI stand-in did not start")
    return process, origin


def _stand_in_count(origin: str) -> int:
    with urllib.request.urlopen(f"{origin}/bench/count", timeout=5) as response:
        return int(json.loads(response.read())["handled"])


def _wait_quiet(origin: str, limit_s: float = 60.0) -> float:
    """Wait until the stand-in has received no request for 0.5 s (a saturated proxy may still be
    working through its backlog); return how long that took, minus the quiet period itself."""
    started = time.monotonic()
    last = _stand_in_count(origin)
    last_change = started
    while time.monotonic() - started < limit_s:
        time.sleep(0.25)
        count = _stand_in_count(origin)
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        elif now - last_change >= 0.5:
            break
    return last_change - started


def _stand_in_ceiling(origin: str, duration: float = 3.0) -> Stats:
    command = [*taskset(0), sys.executable, __file__, "--ceiling", f"{origin}/v1/chat/completions", str(duration)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def _start_remote_gateway(
    tmp: Path, origin: str, python_args: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """The gateway with the echo local tier and one provider, `openai`, pointed at the stand-in.

    `python_args` go to the interpreter before `-m gateway` (scripts/profile_remote.py: `-m cProfile -o FILE`)."""
    port = free_port()
    config = tmp / "bench-remote.toml"
    config.write_text(
        f'state_dir = "{tmp / "gateway-state"}"\n'
        "[local]\n"
        'backend = "echo"\n'
        "[server]\n"
        'log_level = "WARNING"\n'
        "[cache]\n"
        "enabled = false\n"
        "[routing]\n"
        'escalation_order = ["openai"]\n'
        "breaker_failures = 1000000000\n"  # a pure forwarder under overload, as LiteLLM is told below
        "[providers.openai]\n"
        f'model = "{REMOTE_MODEL}"\n'
        f'base_url = "{origin}/v1"\n'
        'api_key_env = "OPENAI_API_KEY"\n'
        "daily_token_budget = 1000000000000\n"
        "requests_per_minute = 0\n"
        f"timeout_s = {CALL_TIMEOUT_S}\n"
        "max_retries = 0\n"
        "top_logprobs = 0\n"  # the direct and LiteLLM requests ask for no logprobs either
    )
    serve = serve_command(config, port, free_port())
    command = [*taskset(0), serve[0], *python_args, *serve[1:]]
    env = {**os.environ, "OPENAI_API_KEY": PROVIDER_KEY}
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    target = f"127.0.0.1:{port}"
    answer = _wait_ready(target, process, f"openai/{REMOTE_MODEL}")
    if answer.provider != "openai":
        process.terminate()
        raise RuntimeError(f"the gateway answered from {answer.provider!r}, not from the openai stand-in")
    return process, target


def _ensure_litellm(spec: str) -> tuple[Path | None, str]:
    """The `litellm` command in .venv-litellm, installing it there on first use; (None, why) when unavailable."""
    binary = LITELLM_VENV / "bin" / "litellm"
    python = LITELLM_VENV / "bin" / "python"
    if not binary.exists():
        print(f"installing {spec} into {LITELLM_VENV.name} (first run only; a few minutes)", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
            pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", spec]
            subprocess.run(pip, check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            return None, f"not measured: installing {spec} failed ({exc})"
    code = "import importlib.metadata as m; print(m.version('litellm'))"
    version = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False).stdout.strip()
    return binary, f"litellm {version or '?'} proxy, 1 worker, master key, no database"


def _start_litellm(
    binary: Path, tmp: Path, origin: str, *, mock: bool = False
) -> tuple[subprocess.Popen[bytes], str] | str:
    """LiteLLM's proxy with one model routed to the stand-in (or answering from `mock_response`, its
    instant backend); its address, or why it did not start."""
    port = free_port()
    config = tmp / ("litellm-mock.yaml" if mock else "litellm.yaml")
    upstream = f"      mock_response: {PROMPT}\n" if mock else f"      api_base: {origin}/v1\n"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {REMOTE_MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{REMOTE_MODEL}\n"
        f"{upstream}"
        f"      api_key: {PROVIDER_KEY}\n"
        "litellm_settings:\n"
        "  num_retries: 0\n"
        f"  request_timeout: {CALL_TIMEOUT_S:.0f}\n"
        "  telemetry: false\n"
        "router_settings:\n"
        "  num_retries: 0\n"
        "  disable_cooldowns: true\n"  # a pure forwarder under overload, as the gateway's breaker is told
        "general_settings:\n"
        f"  master_key: {LITELLM_MASTER_KEY}\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL")}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"})
    command = [*taskset(0), str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--num_workers", "1"]
    log_path = tmp / ("litellm-mock.log" if mock else "litellm.log")
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, cwd=tmp, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    body = json.dumps(_chat_body()).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LITELLM_MASTER_KEY}"}

    def answers() -> bool | None:
        try:
            request = urllib.request.Request(f"{base}/v1/chat/completions", data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                return True if response.status == 200 else None
        except (urllib.error.URLError, OSError):
            return None

    try:
        wait_for(answers, what="the proxy", timeout_s=READY_TIMEOUT_S, process=process, interval_s=0.5)
    except RuntimeError as exc:
        if process.poll() is None:
            process.kill()
        return f"not measured: {exc}:\n{log_path.read_text(errors='replace')[-2000:]}"
    return process, base


# -- load generator (its own process) ---------------------------------------------------


def _request(pb: object, model: str = "") -> object:
    return pb.GenerateRequest(  # type: ignore[attr-defined]
        messages=[pb.ChatMessage(role="user", content=PROMPT)],  # type: ignore[attr-defined]
        max_tokens=MAX_TOKENS,
        model=model,
    )


def _chat_body(model: str = "") -> dict[str, Any]:
    return {
        "model": model or REMOTE_MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
    }


async def _load(target: str, rate: int, duration: float, pin: str = "", deadline_s: float = 0.0) -> Stats:
    if target.startswith("http://"):
        return await _load_http(target, rate, duration, pin, deadline_s)
    return await _load_grpc(target, rate, duration, pin, deadline_s)


async def _load_grpc(target: str, rate: int, duration: float, pin: str, deadline_s: float = 0.0) -> Stats:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    request = _request(pb, pin)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def send() -> None:
            await stub.Generate(request, timeout=deadline_s or CALL_TIMEOUT_S)

        def describe(exc: BaseException) -> str:
            code = getattr(exc, "code", None)
            return str(code().name) if callable(code) else type(exc).__name__

        return await _open_loop(send, rate, duration, (grpc.RpcError,), describe, deadline_s)


class _HTTPStatusError(Exception):
    pass


async def _load_http(url: str, rate: int, duration: float, model: str = "", deadline_s: float = 0.0) -> Stats:
    import aiohttp

    body = json.dumps(_chat_body(model)).encode()
    # The stand-in ignores the key; LiteLLM checks it against its master key.
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {LITELLM_MASTER_KEY}"}
    timeout = aiohttp.ClientTimeout(total=deadline_s or CALL_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=0)  # open loop: a connection per request in flight, as needed
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise _HTTPStatusError(response.status)

        failures = (aiohttp.ClientError, TimeoutError, _HTTPStatusError, OSError)
        return await _open_loop(send, rate, duration, failures, _describe_http_error, deadline_s)


def _describe_http_error(exc: BaseException) -> str:
    if isinstance(exc, _HTTPStatusError):
        return f"HTTP {exc.args[0]}"
    return "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__


async def _open_loop(
    send: Callable[[], Awaitable[None]],
    rate: int,
    duration: float,
    failures: tuple[type[BaseException], ...],
    describe: Callable[[BaseException], str],
    deadline_s: float = 0.0,
) -> Stats:
    """Start one `send()` every 1/rate s regardless of answers; latency counts from the scheduled time.

    `good`: answers within `deadline_s` of their scheduled time (every answer when it is 0)."""
    latencies: list[float] = []
    error_kinds: dict[str, int] = {}

    async def one(scheduled: float) -> None:
        try:
            await send()
            latencies.append(time.perf_counter() - scheduled)
        except failures as exc:
            kind = describe(exc)
            error_kinds[kind] = error_kinds.get(kind, 0) + 1

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

    stats = {"qps": len(latencies) / elapsed, "p50": pct(0.5), "p99": pct(0.99), "p999": pct(0.999)}
    good = sum(1 for x in latencies if x <= deadline_s) if deadline_s else len(latencies)
    stats.update(sent=total, answered=len(latencies), good=good, elapsed=elapsed)
    return {**stats, "errors": sum(error_kinds.values()), "error_kinds": error_kinds}


async def _closed_loop(url: str, duration: float, in_flight: int = 32) -> Stats:
    """The stand-in's ceiling: `in_flight` callers, each sending its next request as soon as one returns."""
    import aiohttp

    body = json.dumps(_chat_body()).encode()
    headers = {"Content-Type": "application/json"}
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        stop_at = time.perf_counter() + duration

        async def caller() -> None:
            while (sent := time.perf_counter()) < stop_at:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                latencies.append(time.perf_counter() - sent)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(in_flight)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
    return {"qps": len(latencies) / elapsed, "p50": p50, "in_flight": in_flight}


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
                "model": body.get("model", ECHO_MODEL),
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


async def _stand_in() -> None:
    """tests/fakes' OpenAI stand-in on a free loopback port; prints its origin, serves until SIGTERM.

    Adds GET /bench/count (requests answered so far) and keeps no request history."""
    import logging

    from aiohttp import web

    from tests.fakes.openai_fake import FakeOpenAI

    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # callers that gave up mid-request

    class StandIn(FakeOpenAI):
        handled = 0

        async def _handle(self, request: web.Request) -> web.StreamResponse:
            if request.path == "/bench/count":
                return web.json_response({"handled": self.handled})
            try:
                return await super()._handle(request)
            finally:
                self.seen.clear()
                self.handled += 1

    fake = StandIn()
    await fake.start()
    print(fake.origin, flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await fake.stop()


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
