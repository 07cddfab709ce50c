"""A valid API key's latency, alone and while a flood of random wrong keys hits the same gateway.

The gateway (echo backend, response cache off, one API key) runs on core 0; the load
generators run on core 1, each in its own process. Two rounds, each: the valid key alone at
`--rate` for `--duration` s, then the same load while another process sends random wrong
keys open-loop at `--flood-rate`. Prints p50/p99 of the valid calls in each case, and what
the flood got back (every call should be UNAUTHENTICATED). Asserts nothing.

    python scripts/bench_keys.py [--rate 200] [--flood-rate 1000] [--duration 5]
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_harness import CALL_TIMEOUT_S, MAX_TOKENS, PROMPT, open_loop
from benchlib import ROOT, arun, free_port, load_average, serve_command, stop, taskset, wait_serving

Stats = dict[str, Any]
RANDOM = "random"  # the flood's key: a new well-formed but unknown key for every call


@dataclass(frozen=True)
class Settings:
    rate: int = 200
    flood_rate: int = 1000
    duration_s: float = 5.0
    rounds: int = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=Settings.rate, help="valid-key calls per second")
    parser.add_argument("--flood-rate", type=int, default=Settings.flood_rate, help="wrong-key calls per second")
    parser.add_argument("--duration", type=float, default=Settings.duration_s, help="seconds per measurement")
    parser.add_argument("--loadgen", nargs=4, metavar=("TARGET", "RATE", "DURATION", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        target, rate, duration, key = args.loadgen
        print("started", flush=True)
        print(json.dumps(arun(_load(target, int(rate), float(duration), key))), flush=True)
        return
    run(Settings(rate=args.rate, flood_rate=args.flood_rate, duration_s=args.duration))


def run(settings: Settings) -> None:
    print()
    print("== API keys: a valid key alone, and under a flood of random wrong keys ==")
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        config = tmp / "bench-keys.toml"
        config.write_text(
            f'state_dir = "{tmp / "state"}"\n[local]\nbackend = "echo"\n[server]\nlog_level = "WARNING"\n'
            "[cache]\nenabled = false\n"
        )
        create = [sys.executable, "-m", "gateway", "keys", "create", "bench", "--config", str(config)]
        key = subprocess.run(create, cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        port = free_port()
        gateway = subprocess.Popen([*taskset(0), *serve_command(config, port, free_port())], cwd=ROOT)
        target = f"127.0.0.1:{port}"
        rows: list[tuple[str, Stats, Stats | None]] = []
        try:
            wait_serving(target, process=gateway)
            _valid(target, key, min(settings.rate, 50), 1.0)  # warm-up
            for _ in range(settings.rounds):
                rows.append(("alone", _valid(target, key, settings.rate, settings.duration_s), None))
                flood = _start(target, settings.flood_rate, settings.duration_s + 1.0, RANDOM)
                under = _valid(target, key, settings.rate, settings.duration_s)
                out, _ = flood.communicate(timeout=settings.duration_s + 120)
                rows.append(("under flood", under, json.loads(out.splitlines()[-1])))
                print(f"  round done, load average {load_average()}", flush=True)
        finally:
            stop(gateway)
    _print(rows, settings)
    print(f"load average at the end: {load_average()}")


def _print(rows: list[tuple[str, Stats, Stats | None]], settings: Settings) -> None:
    print()
    print(f"valid key at {settings.rate}/s; flood of random wrong keys at {settings.flood_rate}/s")
    print(f"{'valid key':<12} {'achieved':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}   flood")
    for name, s, flood in rows:
        cells = f"{s['qps']:>9.0f} {s['errors']:>7.0f} {s['p50']:>8.3f} {s['p99']:>8.3f} {s['p999']:>9.3f}"
        note = ""
        if flood is not None:
            kinds = ", ".join(f"{kind} x{n}" for kind, n in sorted(flood["error_kinds"].items()))
            note = f"   {flood['errors']:.0f} calls refused ({kinds})"
            if flood["qps"]:
                note += f" -- {flood['qps']:.0f}/s answered: a wrong key got through"
        print(f"{name:<12} {cells}{note}")


def _valid(target: str, key: str, rate: int, duration: float) -> Stats:
    process = _start(target, rate, duration, key)
    out, _ = process.communicate(timeout=duration + 120)
    return dict(json.loads(out.splitlines()[-1]))


def _start(target: str, rate: int, duration: float, key: str) -> subprocess.Popen[str]:
    """A load generator on core 1; returns once it has connected and is about to send."""
    command = [*taskset(1), sys.executable, __file__, "--loadgen", target, str(rate), str(duration), key]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if process.stdout is None or process.stdout.readline().strip() != "started":
        process.kill()
        raise RuntimeError("the load generator did not start")
    return process


async def _load(target: str, rate: int, duration: float, key: str) -> Stats:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    request = pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=PROMPT)], max_tokens=MAX_TOKENS)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def send() -> None:
            token = f"gw_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}" if key == RANDOM else key
            await stub.Generate(request, timeout=CALL_TIMEOUT_S, metadata=(("authorization", f"Bearer {token}"),))

        def describe(exc: BaseException) -> str:
            code = getattr(exc, "code", None)
            return str(code().name) if callable(code) else type(exc).__name__

        return await open_loop(send, rate, duration, (grpc.RpcError,), describe)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
