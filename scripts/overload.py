"""Goodput past saturation, per class, with today's defaults and the old ones; a burst at the embedded model.

    python scripts/overload.py [--deadline-ms 500] [--duration 5] [--ramp-duration 2] [--processes 2]
        [--urgent-every 10] [--bulk-every 4] [--burst 96] [--smoke]
    (also `make bench ARGS="--only overload"`)

Every call carries a deadline (`--deadline-ms`). Good: answered within that deadline of its
scheduled send time. Refused: RESOURCE_EXHAUSTED or UNAVAILABLE, counted apart from late ones
(DEADLINE_EXCEEDED, or answered after the deadline). Every `--urgent-every`-th call is URGENT,
every `--bulk-every`-th BULK, the rest NORMAL; each class has its own row.

1. Local path (echo backend) and 2. remote path (every call pinned to the OpenAI stand-in):
   with today's defaults ("now"), a ramp doubling from 100 req/s finds the peak goodput (the
   saturation rate); then 1x, 2x and 4x that rate, for "now" and for "before": the old defaults
   (`[server] max_concurrent_rpcs = 64`, no door limit and no per-tier limits: [admission]
   door_initial = 0, tier limits pinned at 100000, no URGENT share), in the same run.
3. Burst: `--burst` concurrent LOCAL_ONLY requests at the embedded model (24 tokens, then a label
   task), each with a 2 s deadline, after a short warm-up: the share of admitted requests in time.

The load comes from `--processes` generator processes (scripts/bench_harness.py) pinned to cores 1 and up,
the gateway to core 0; before the runs they are calibrated against a bare grpc.aio server at the
highest rate the run will offer, and each row shows their lag behind the schedule (p99), so a row
where the generators fell behind can be told apart. LiteLLM is not in requirements.lock, so it is
not measured here (scripts/bench_overhead.py --only remote installs it beside the checkout).
`--smoke`: a few seconds in all, to check the script runs; its figures mean nothing. Asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_harness as harness
from benchlib import ROOT, arun, free_port, load_average, serve_command, stop, taskset, wait_generate

RAMP_START = 100
RAMP_LIMIT = 12_800
BURST_DEADLINE_S = 2.0
BURST_TOKENS = 24
REFUSED = harness.REFUSED
BEFORE_SERVER = "max_concurrent_rpcs = 64\n"  # the defaults before [admission]
BEFORE_ADMISSION = (
    "[admission]\nurgent_share = 0\nlocal_initial = 100000\nlocal_max = 100000\n"
    "provider_initial = 100000\nprovider_max = 100000\ndoor_initial = 0\n"
)
CONFIGS = (("now", "", ""), ("before", BEFORE_SERVER, BEFORE_ADMISSION))

Stats = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Settings:
    deadline_s: float = 0.5
    duration_s: float = 5.0
    ramp_s: float = 2.0
    burst: int = 96
    processes: int = 2
    urgent_every: int = 10
    bulk_every: int = 4
    smoke: bool = False


@dataclass(frozen=True, slots=True)
class Row:
    path: str
    config: str  # "now" or "before"
    label: str  # "ramp", "1x", "2x", "4x"
    rate: int
    duration_s: float
    classes: dict[str, Stats]

    def goodput(self, klass: str | None = None) -> float:
        chosen = [self.classes[klass]] if klass else list(self.classes.values())
        return sum(int(c["good"]) for c in chosen) / self.duration_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deadline-ms", type=float, default=500.0, help="each call's deadline")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per rate")
    parser.add_argument("--ramp-duration", type=float, default=2.0, help="seconds per ramp step")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--urgent-every", type=int, default=10, help="every n-th call is URGENT (0: none)")
    parser.add_argument("--bulk-every", type=int, default=4, help="every n-th call (offset 1) is BULK (0: none)")
    parser.add_argument("--burst", type=int, default=96, help="concurrent requests to the embedded model")
    parser.add_argument("--smoke", action="store_true", help="a few seconds in all: does the script run")
    args = parser.parse_args()
    run(
        Settings(
            deadline_s=args.deadline_ms / 1000,
            duration_s=args.duration,
            ramp_s=args.ramp_duration,
            burst=args.burst,
            processes=args.processes,
            urgent_every=args.urgent_every,
            bulk_every=args.bulk_every,
            smoke=args.smoke,
        )
    )


def run(settings: Settings) -> None:
    if settings.smoke:
        settings = Settings(settings.deadline_s, 0.5, 0.5, 0, 2, settings.urgent_every, settings.bulk_every, True)
    print()
    print(f"== overload: goodput past saturation, each call's deadline {settings.deadline_s * 1000:.0f} ms ==")
    print(f"load average at start: {load_average()}")
    if settings.smoke:
        print("smoke run: every step is a fraction of a second; the figures mean nothing")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _path(tmp, "local path (echo backend)", "", settings)
        _path(tmp, "remote path (OpenAI stand-in)", f"openai/{harness.REMOTE_MODEL}", settings)
        if settings.burst:
            _burst(tmp, settings)
    print("LiteLLM: not measured (not in requirements.lock)")
    print(f"load average after the overload part: {load_average()}")


# -- 1. and 2. a path, now and before ------------------------------------------------------


def _path(tmp: Path, title: str, pin: str, settings: Settings) -> None:
    stand_in = origin = None
    if pin:
        stand_in, origin = harness.start_stand_in()
    rows: list[Row] = []
    saturation = 0
    try:
        for config, server, extra in CONFIGS:
            name = f"{'remote' if pin else 'echo'}-{config}"
            if origin is not None:
                process, target = harness.start_remote_gateway(tmp, origin, server=server, extra=extra, name=name)
            else:
                process, target = harness.start_gateway(tmp, server=server, extra=extra, name=name)
            try:
                harness.load_in_process(target, 10, 1.0, pin)  # lazy imports, connections
                if not saturation:
                    rows += _ramp(title, config, target, pin, settings)
                    saturation = max(1, round(max(r.goodput() for r in rows)))
                    print(f"  saturation ~{saturation} req/s (peak goodput of the ramp)", flush=True)
                    _calibrate(saturation * 4, settings)
                for factor in (1, 2, 4):
                    rows.append(_step(title, config, f"{factor}x", target, pin, saturation * factor, settings))
            finally:
                stop(process)
    finally:
        if stand_in is not None:
            stop(stand_in)
    _print_rows(title, rows)


def _ramp(title: str, config: str, target: str, pin: str, settings: Settings) -> list[Row]:
    """Double the rate until goodput falls under 90 % of it; the peak goodput is the saturation rate."""
    rows: list[Row] = []
    rate = RAMP_START
    while rate <= (RAMP_START * 2 if settings.smoke else RAMP_LIMIT):
        rows.append(_step(title, config, "ramp", target, pin, rate, settings, settings.ramp_s))
        if rows[-1].goodput() < 0.9 * rate:
            break
        rate *= 2
    return rows


def _step(
    title: str, config: str, label: str, target: str, pin: str, rate: int, settings: Settings, seconds: float = 0.0
) -> Row:
    duration = seconds or settings.duration_s
    classes = harness.load_by_class(
        target,
        rate,
        duration,
        processes=settings.processes,
        deadline_s=settings.deadline_s,
        pin=pin,
        urgent_every=settings.urgent_every,
        bulk_every=settings.bulk_every,
    )
    row = Row(title, config, label, rate, duration, classes)
    refused = sum(int(c["refused"]) for c in classes.values())
    late = sum(int(c["late"]) for c in classes.values())
    lag = max(float(c["lag_p99"]) for c in classes.values() if c["sent"])
    print(
        f"  {config:<6} {label:>4} {rate:>6} req/s offered: {row.goodput():.0f} good/s, {refused} refused, "
        f"{late} late, generator lag p99 {lag:.1f} ms; load average {load_average(one_minute=True)}",
        flush=True,
    )
    return row


def _calibrate(rate: int, settings: Settings) -> None:
    """What the generators send unthrottled: the top rate of the run at a bare grpc.aio server (echo, no gateway)."""
    port = free_port()
    bare = ROOT / "scripts" / "bench_overhead.py"
    process = subprocess.Popen([*taskset(0), sys.executable, str(bare), "--bare-server", str(port)], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    try:
        from gateway.v1 import gateway_pb2 as pb

        wait_generate(target, harness.grpc_request(pb), process=process)
        classes = harness.load_by_class(
            target, rate, settings.duration_s, processes=settings.processes, deadline_s=settings.deadline_s
        )
    finally:
        stop(process)
    good = sum(int(c["good"]) for c in classes.values()) / settings.duration_s
    lag = max(float(c["lag_p99"]) for c in classes.values() if c["sent"])
    print(
        f"  generators: {settings.processes} processes{' beside the gateway' if taskset() else ''} offered {rate}/s "
        f"to a bare grpc.aio server: {good:.0f} answered in time per s, lag behind the schedule p99 {lag:.1f} ms",
        flush=True,
    )


def _print_rows(title: str, rows: list[Row]) -> None:
    print()
    print(f"-- {title} --")
    peak = max((r.goodput() for r in rows if r.config == "now" and r.label == "ramp"), default=0.0)
    header = f"{'config':<7} {'run':>4} {'class':<7} {'offered/s':>9} {'good/s':>7} {'refused':>7} {'late':>6}"
    print(f"{header} {'p99 ms':>8} {'lag p99':>8} {'of peak':>8}")
    for r in rows:
        for klass, c in r.classes.items():
            offered = c["sent"] / r.duration_s
            line = f"{r.config:<7} {r.label:>4} {klass:<7} {offered:>9.0f} {c['good'] / r.duration_s:>7.0f}"
            share = f"{100 * r.goodput() / peak:.0f}%" if peak and klass == "normal" else ""
            print(f"{line} {c['refused']:>7} {c['late']:>6} {c['p99']:>8.1f} {c['lag_p99']:>8.1f} {share:>8}")
    print("(good/s: answered within the deadline of the scheduled send, per second; refused: RESOURCE_EXHAUSTED or")
    print(" UNAVAILABLE; late: past the deadline; p99: of the answers; lag p99: how far the generators' sends fell")
    print(" behind the schedule; of peak: both classes' good/s over the best of the 'now' ramp, on the normal row)")


# -- 3. burst at the embedded model ------------------------------------------------------------

BURST_CONFIG = """
[server]
log_level = "WARNING"

[cache]
enabled = false

[tasks.yesno]
labels = ["yes", "no"]
system_prompt = "Answer with one word: yes or no."
"""


def _burst(tmp: Path, settings: Settings) -> None:
    config = tmp / "burst.toml"
    config.write_text(f'state_dir = "{tmp / "burst-state"}"\n' + BURST_CONFIG)
    port = free_port()
    process = subprocess.Popen([*taskset(0), *serve_command(config, port, free_port())], cwd=ROOT)
    target = f"127.0.0.1:{port}"
    try:
        harness.wait_ready(target, process)
        results = arun(_bursts(target, settings.burst))
    finally:
        stop(process)
    print()
    deadline = f"{BURST_DEADLINE_S:.0f} s deadline"
    print(f"-- burst: {settings.burst} concurrent LOCAL_ONLY requests at the embedded model, {deadline} --")
    print(f"{'requests':<22} {'in time':>7} {'refused':>7} {'late':>6} {'admitted in time':>17} {'p99 ms':>8}")
    for name, r in results.items():
        admitted = r["good"] + r["late"]
        share = f"{100 * r['good'] / admitted:.0f}%" if admitted else "-"
        print(f"{name:<22} {r['good']:>7} {r['refused']:>7} {r['late']:>6} {share:>17} {r['p99']:>8.1f}")
    print("(admitted in time: answered within the deadline, over the requests not refused at once)")


async def _bursts(target: str, n: int) -> dict[str, Stats]:
    import grpc

    from gateway.v1 import gateway_pb2_grpc as pb_grpc

    results: dict[str, Stats] = {}
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        for task, name in (("", f"{BURST_TOKENS} tokens"), ("yesno", "label (yesno)")):
            for i in range(3):  # warm-up: the model times its batches
                await stub.Generate(_burst_request(i, task), timeout=30)
            results[name] = await _one_burst(stub, task, n)
            await asyncio.sleep(BURST_DEADLINE_S)  # the late ones leave the model before the next burst
    return results


def _burst_request(i: int, task: str) -> Any:
    from gateway.v1 import gateway_pb2 as pb

    content = f"Is {i} an even number?" if task else f"Describe the stock market on day {i} of the year."
    return pb.GenerateRequest(
        messages=[pb.ChatMessage(role="user", content=content)],
        max_tokens=BURST_TOKENS,
        task=task,
        privacy=pb.PRIVACY_LOCAL_ONLY,
    )


async def _one_burst(stub: Any, task: str, n: int) -> Stats:
    import grpc

    outcomes: list[tuple[str, float]] = []
    started = time.perf_counter()

    async def one(i: int) -> None:
        try:
            await stub.Generate(_burst_request(i, task), timeout=BURST_DEADLINE_S)
            outcomes.append(("ok", time.perf_counter() - started))
        except grpc.RpcError as exc:
            outcomes.append((exc.code().name, time.perf_counter() - started))

    await asyncio.gather(*(one(i) for i in range(n)))
    times = sorted(t for kind, t in outcomes if kind == "ok")
    good = sum(1 for t in times if t <= BURST_DEADLINE_S)
    refused = sum(1 for kind, _ in outcomes if kind in REFUSED)
    p99 = times[min(len(times) - 1, int(0.99 * len(times)))] * 1000 if times else float("nan")
    return {"good": good, "refused": refused, "late": n - good - refused, "p99": p99}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
