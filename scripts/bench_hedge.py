"""Hedged URGENT requests: their p99 with and without hedging, and the provider tokens hedging spent.

The same gateway config runs twice, with [routing] hedge = false and hedge = true
(the delay left unset: the local tier's observed p95 per task, at least
hedge_min_ms). The local tier is the echo backend with a heavy tail: every
answer takes `--delay-ms`, and a `--tail-share` of them an exponentially
distributed extra of mean `--tail-ms`. The remote tier is the OpenAI stand-in
(tests/fakes) in its own process. A load generator in its own process sends
URGENT Generate calls open-loop at `--rate` for `--duration` seconds, after a
warm-up that gives the p95 estimate its first answers. Prints, for each run,
the achieved rate, p50/p99/p99.9 (from each call's scheduled send time), the
share answered by the provider, the calls the stand-in received, and the
provider tokens the gateway's ledger recorded (GetUsage), in all and per request.

    python scripts/bench_hedge.py [--rate 100] [--duration 10] [--delay-ms 5] [--tail-share 0.05] [--tail-ms 300]
    (also `python scripts/bench_overhead.py --only hedge`)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_harness import (
    CALL_TIMEOUT_S,
    MAX_TOKENS,
    PROMPT,
    PROVIDER_KEY,
    REMOTE_MODEL,
    open_loop,
    stand_in_count,
    start_stand_in,
    wait_quiet,
)
from benchlib import ROOT, arun, free_port, load_average, serve_command, taskset, wait_generate

Stats = dict[str, Any]


@dataclass(frozen=True)
class Settings:
    rate: int = 100
    duration_s: float = 10.0
    delay_ms: float = 5.0
    tail_share: float = 0.05
    tail_ms: float = 300.0
    warmup_s: float = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=Settings.rate, help="URGENT requests per second offered")
    parser.add_argument("--duration", type=float, default=Settings.duration_s, help="seconds per run")
    parser.add_argument("--delay-ms", type=float, default=Settings.delay_ms, help="every echo answer's delay")
    parser.add_argument("--tail-share", type=float, default=Settings.tail_share, help="share of slow echo answers")
    parser.add_argument("--tail-ms", type=float, default=Settings.tail_ms, help="mean extra delay of a slow answer")
    parser.add_argument("--loadgen", nargs=3, metavar=("TARGET", "RATE", "DURATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        target, rate, duration = args.loadgen
        print(json.dumps(arun(_load(target, int(rate), float(duration)))))
        return
    run(Settings(args.rate, args.duration, args.delay_ms, args.tail_share, args.tail_ms))


def run(settings: Settings) -> None:
    print()
    print("== hedged URGENT requests: echo with a heavy tail locally, the OpenAI stand-in remotely ==")
    print(
        f"load average at start: {load_average()}; echo: {settings.delay_ms:g} ms, {settings.tail_share:.0%} of "
        f"answers + Exp(mean {settings.tail_ms:g} ms); {settings.rate} req/s for {settings.duration_s:g} s per run"
    )
    rows: list[tuple[str, Stats]] = []
    stand_in, origin = start_stand_in()
    try:
        for name, hedge in (("no hedging", False), ("hedging", True)):
            with tempfile.TemporaryDirectory() as tmp:
                gateway, target = start_gateway(Path(tmp), origin, hedge, settings)
                try:
                    load_in_process(target, min(settings.rate, 50), settings.warmup_s)  # the p95 gets its answers
                    wait_quiet(origin)
                    tokens, calls = _provider_tokens(target), stand_in_count(origin)
                    stats = load_in_process(target, settings.rate, settings.duration_s)
                    wait_quiet(origin)
                    stats["calls"] = stand_in_count(origin) - calls
                    stats["tokens"] = _provider_tokens(target) - tokens
                    rows.append((name, stats))
                    print(f"  {name}: done, load average {load_average()}", flush=True)
                finally:
                    gateway.send_signal(signal.SIGTERM)
                    gateway.wait(30)
    finally:
        stand_in.send_signal(signal.SIGTERM)
        stand_in.wait(30)
    _print(rows)


def _print(rows: list[tuple[str, Stats]]) -> None:
    print()
    header = f"{'run':<11} {'achieved':>9} {'errors':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9}"
    print(f"{header} {'remote':>7} {'calls':>6} {'tokens':>7} {'tokens/req':>11}")
    for name, s in rows:
        answered = s["answered"] or 1
        cells = f"{s['qps']:>9.0f} {s['errors']:>7.0f} {s['p50']:>8.2f} {s['p99']:>8.2f} {s['p999']:>9.2f}"
        remote = s["remote"] / answered
        cells += f" {remote:>7.1%} {s['calls']:>6.0f} {s['tokens']:>7.0f} {s['tokens'] / answered:>11.2f}"
        print(f"{name:<11} {cells}")
    print("(remote: share of answers from the provider; calls: requests the stand-in received, cancelled")
    print(" hedges included; tokens: provider tokens in the gateway's ledger for the run, a cancelled call")
    print(" counted at its estimate)")


def start_gateway(tmp: Path, origin: str, hedge: bool, s: Settings) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = tmp / "bench-hedge.toml"
    config.write_text(
        f'state_dir = "{tmp / "gateway-state"}"\n'
        "[local]\n"
        'backend = "echo"\n'
        "[local.echo]\n"
        f"delay_ms = {s.delay_ms}\n"
        f"tail_share = {s.tail_share}\n"
        f"tail_ms = {s.tail_ms}\n"
        "[server]\n"
        'log_level = "WARNING"\n'
        "[cache]\n"
        "enabled = false\n"
        "[routing]\n"
        'escalation_order = ["openai"]\n'
        f"hedge = {str(hedge).lower()}\n"
        "breaker_failures = 1000000000\n"
        "[providers.openai]\n"
        f'model = "{REMOTE_MODEL}"\n'
        f'base_url = "{origin}/v1"\n'
        'api_key_env = "OPENAI_API_KEY"\n'
        f"timeout_s = {CALL_TIMEOUT_S}\n"
        "max_retries = 0\n"
        "top_logprobs = 0\n"
    )
    command = [*taskset(0), *serve_command(config, port, free_port())]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": PROVIDER_KEY})
    target = f"127.0.0.1:{port}"
    from gateway.v1 import gateway_pb2 as pb

    wait_generate(target, grpc_request(pb), process=process)
    return process, target


def _provider_tokens(target: str) -> int:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        usage = pb_grpc.InferenceGatewayStub(channel).GetUsage(pb.GetUsageRequest(), timeout=10)
    return sum(p.tokens_used for p in usage.providers if p.provider == "openai")


def load_in_process(target: str, rate: int, duration: float) -> Stats:
    command = [*taskset(1), sys.executable, __file__, "--loadgen", target, str(rate), str(duration)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout))


def grpc_request(pb: Any) -> Any:
    message = pb.ChatMessage(role="user", content=PROMPT)
    return pb.GenerateRequest(messages=[message], max_tokens=MAX_TOKENS, priority=pb.PRIORITY_URGENT)


async def _load(target: str, rate: int, duration: float) -> Stats:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    request = grpc_request(pb)
    tiers: dict[str, int] = {"answered": 0, "remote": 0}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)

        async def send() -> None:
            answer = await stub.Generate(request, timeout=CALL_TIMEOUT_S)
            tiers["answered"] += 1
            tiers["remote"] += answer.tier == pb.TIER_REMOTE

        def describe(exc: BaseException) -> str:
            code = getattr(exc, "code", None)
            return str(code().name) if callable(code) else type(exc).__name__

        stats = await open_loop(send, rate, duration, (grpc.RpcError,), describe)
    return {**stats, **tiers}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
