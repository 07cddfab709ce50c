"""Soak: a gateway process under a fixed mixed load for a long time, watched for leaks.

Starts the OpenAI stand-in from tests/fakes (in this process) and a gateway
(`python -m gateway serve`, echo backend with a small delay, SQLite state in a
temporary folder), then offers a fixed open-loop load for `--duration` seconds:
a third cache hits (a small set of repeated temperature-0 prompts), a third
local answers and a third remote answers through the stand-in (both at
temperature 0.7, so they are never cached and the cache does not grow). Every
`--every` seconds it samples the gateway process: resident memory
(/proc/PID/status VmRSS), open file descriptors (/proc/PID/fd) and asyncio
tasks (`gateway_asyncio_tasks` on /metrics).

After `--warmup` seconds the first sample is the baseline; the figures compare
the end with it. It prints the samples' summary and the load average, and
exits 1 when a limit is broken: RSS grew by more than `--rss-growth-pct`
(median of the first and last minute of samples), the open file descriptors or
asyncio tasks at the end exceed the baseline by more than `--fd-slack` /
`--task-slack` (both medians), or more than `--max-failed-pct` of the requests
failed (load shedding on a busy machine refuses some with RESOURCE_EXHAUSTED;
the figures list why).

    python scripts/soak.py                  # 10 minutes, the first 2 are warm-up (make soak)
    python scripts/soak.py --duration 20 --warmup 8 --rss-growth-pct 100 --max-failed-pct 100  # the smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import ROOT, free_port, load_average, serve_command, wait_serving

CACHED_PROMPTS = 20
PROVIDER_KEY = "sk-soak-not-a-real-key"

CONFIG = """
[server]
default_max_tokens = 16

[local]
backend = "echo"

[local.echo]
delay_ms = {echo_delay_ms}

[routing]
escalation_order = ["openai"]

[[routing.rules]]
match_tag = {{ route = "remote" }}
escalate = true

[providers.openai]
model = "gpt-test"
base_url = "{openai}"
max_retries = 0
timeout_s = 10

[dashboard]
enabled = false
"""


@dataclass(frozen=True)
class Settings:
    duration_s: float
    warmup_s: float
    every_s: float
    rate: float  # requests per second, all kinds together
    echo_delay_ms: float
    provider_delay_s: float
    rss_growth_pct: float
    fd_slack: int
    task_slack: int
    max_failed_pct: float


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the load started
    rss_kib: int
    fds: int
    tasks: float


@dataclass
class Tally:
    answered: Counter[str] = field(default_factory=Counter)  # by tier
    failed: Counter[str] = field(default_factory=Counter)  # by gRPC status
    reasons: Counter[str] = field(default_factory=Counter)  # kind: status: details, for the report

    @property
    def total(self) -> int:
        return sum(self.answered.values()) + sum(self.failed.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds before the baseline sample (default 120)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second offered (default 60)")
    parser.add_argument("--echo-delay-ms", type=float, default=20.0)
    parser.add_argument("--provider-delay-s", type=float, default=0.05)
    parser.add_argument("--rss-growth-pct", type=float, default=10.0)
    parser.add_argument("--fd-slack", type=int, default=8)
    parser.add_argument("--task-slack", type=int, default=16)
    parser.add_argument("--max-failed-pct", type=float, default=1.0)
    args = parser.parse_args()
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    settings = Settings(
        args.duration,
        args.warmup,
        args.every,
        args.rate,
        args.echo_delay_ms,
        args.provider_delay_s,
        args.rss_growth_pct,
        args.fd_slack,
        args.task_slack,
        args.max_failed_pct,
    )
    sys.path.insert(0, str(ROOT))
    return asyncio.run(soak(settings))


async def soak(settings: Settings) -> int:
    from tests.fakes.base import Fault
    from tests.fakes.openai_fake import FakeOpenAI

    fake = FakeOpenAI()
    fake.always(Fault(delay_s=settings.provider_delay_s))
    await fake.start()
    try:
        with tempfile.TemporaryDirectory(prefix="soak-") as folder:
            workdir = Path(folder)
            config = workdir / "gateway.toml"
            folders = f'cache_dir = "{workdir}/cache"\nstate_dir = "{workdir}/state"\n'
            text = CONFIG.format(echo_delay_ms=settings.echo_delay_ms, openai=f"{fake.origin}/v1")
            config.write_text(folders + text)
            port, http_port = free_port(), free_port()
            env = {**os.environ, "OPENAI_API_KEY": PROVIDER_KEY}
            gateway = start_gateway(serve_command(config, port, http_port), env, workdir / "gateway.log")
            try:
                await asyncio.to_thread(wait_serving, f"127.0.0.1:{port}", process=gateway)
                samples, tally = await run_load(settings, gateway.pid, f"127.0.0.1:{port}", http_port, fake)
            finally:
                gateway.terminate()
                gateway.wait(60)
    finally:
        await fake.stop()
    return report(settings, samples, tally)


async def run_load(settings: Settings, pid: int, target: str, http_port: int, fake: Any) -> tuple[list[Sample], Tally]:
    import grpc

    from gateway.v1 import gateway_pb2 as pb
    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    tally = Tally()
    samples: list[Sample] = []
    kinds = itertools.cycle(("cached", "local", "remote"))
    started = time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    def request(kind: str, n: int) -> Any:
        if kind == "cached":
            text, temperature, tags = f"cached question {n % CACHED_PROMPTS}", 0.0, {}
        else:
            text, temperature, tags = f"{kind} question {n}", 0.7, {"route": "remote"} if kind == "remote" else {}
        return pb.GenerateRequest(
            messages=[pb.ChatMessage(role="user", content=text)], temperature=temperature, tags=tags
        )

    async def one(stub: Any, kind: str, message: Any) -> None:
        try:
            response = await stub.Generate(message, timeout=10)
            tally.answered[pb.Tier.Name(response.tier)] += 1
        except grpc.aio.AioRpcError as exc:
            tally.failed[exc.code().name] += 1
            tally.reasons[f"{kind}: {exc.code().name}: {exc.details()}"] += 1

    async def sampler() -> None:
        while True:
            samples.append(await asyncio.to_thread(sample, pid, http_port, time.monotonic() - started))
            await asyncio.sleep(settings.every_s)

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        watching = asyncio.create_task(sampler())
        for n in itertools.count():  # open loop: each send at its scheduled time, whatever the answers do
            due = started + n / settings.rate
            if due - started >= settings.duration_s:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            kind = next(kinds)
            task = asyncio.create_task(one(stub, kind, request(kind, n)))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        samples.append(await asyncio.to_thread(sample, pid, http_port, time.monotonic() - started))
    print(f"stand-in answered {fake.requests} remote calls")
    return samples, tally


def start_gateway(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def sample(pid: int, http_port: int, at: float) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    rss = int(match.group(1)) if match else 0
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as reply:
        body = reply.read().decode()
    found = re.search(r"^gateway_asyncio_tasks (\S+)$", body, re.MULTILINE)
    return Sample(at, rss, fds, float(found.group(1)) if found else float("nan"))


def report(settings: Settings, samples: list[Sample], tally: Tally) -> int:
    steady = [s for s in samples if s.at >= settings.warmup_s]
    window = max(1, round(60 / settings.every_s))  # a minute of samples, or what there is
    first, last = steady[:window], steady[-window:]

    def median(values: list[float]) -> float:
        return statistics.median(values) if values else float("nan")

    rss0, rss1 = median([s.rss_kib for s in first]), median([s.rss_kib for s in last])
    fd0, fd1 = median([s.fds for s in first]), median([s.fds for s in last])
    task0, task1 = median([s.tasks for s in first]), median([s.tasks for s in last])
    growth = (rss1 - rss0) / rss0 * 100 if rss0 else float("nan")
    print(
        f"soak: {settings.duration_s:.0f} s at {settings.rate:g} req/s (warm-up {settings.warmup_s:.0f} s), "
        f"{len(samples)} samples every {settings.every_s:g} s"
    )
    print(f"requests: {tally.total} sent; answered by tier {dict(tally.answered)}; failed {dict(tally.failed)}")
    print(
        f"rss: {rss0 / 1024:.1f} MiB -> {rss1 / 1024:.1f} MiB ({growth:+.1f} %, limit {settings.rss_growth_pct:g} %); "
        f"max {max(s.rss_kib for s in samples) / 1024:.1f} MiB"
    )
    print(f"open fds: {fd0:.0f} -> {fd1:.0f} (slack {settings.fd_slack}); max {max(s.fds for s in samples)}")
    print(
        f"asyncio tasks: {task0:.0f} -> {task1:.0f} (slack {settings.task_slack}); "
        f"max {max(s.tasks for s in samples):.0f}"
    )
    print(f"load average (1, 5, 15 min): {load_average()}; cpus: {os.cpu_count()}")
    broken = []
    if not growth <= settings.rss_growth_pct:
        broken.append(f"RSS grew {growth:.1f} % (limit {settings.rss_growth_pct:g} %)")
    if not fd1 <= fd0 + settings.fd_slack:
        broken.append(f"open file descriptors grew from {fd0:.0f} to {fd1:.0f}")
    if not task1 <= task0 + settings.task_slack:
        broken.append(f"asyncio tasks grew from {task0:.0f} to {task1:.0f}")
    failed_pct = sum(tally.failed.values()) / max(tally.total, 1) * 100
    if failed_pct > settings.max_failed_pct:
        broken.append(f"{failed_pct:.2f} % of the requests failed (limit {settings.max_failed_pct:g} %)")
    for reason, count in tally.reasons.most_common(5):
        print(f"  failed x{count}: {reason}")
    for line in broken:
        print(f"LIMIT BROKEN: {line}")
    print("soak: ok" if not broken else "soak: FAILED")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
