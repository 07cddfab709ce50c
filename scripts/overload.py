"""`make bench ARGS="--only overload"`: goodput past saturation, and a burst at the embedded model.

Every call carries a deadline (`--overload-deadline-ms`). Goodput is the number of
answers that arrived within that deadline of their scheduled send time, per second
of offered load; refused calls (RESOURCE_EXHAUSTED, UNAVAILABLE, HTTP 429/503)
are counted apart from late ones (DEADLINE_EXCEEDED, CANCELLED, client timeouts).

1. Local path (echo backend) and 2. remote path (the gateway pinned to the OpenAI
   stand-in): a short ramp (doubling from 100 req/s) finds the rate at which the
   gateway's goodput stops growing; its peak is the saturation rate. Then 1x, 2x
   and 4x that rate are offered for `--overload-duration` s each. On the remote
   path LiteLLM's proxy, pointed at the same stand-in, gets the same rates.
2. Burst: `--burst` concurrent LOCAL_ONLY requests at the embedded model (24
   tokens, then a label task), each with a 2 s deadline, after a short warm-up.
   The figure that matters is the share of ADMITTED requests answered in time.

The open-loop load generator is bench_overhead's (its own process, core 1; the
gateway on core 0). Asserts nothing.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bench_overhead as bench
from benchlib import ROOT, arun, free_port, load_average, serve_command, stop, taskset

REFUSED = ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "HTTP 429", "HTTP 503")
RAMP_START = 100
RAMP_LIMIT = 12_800
BURST_DEADLINE_S = 2.0
BURST_TOKENS = 24

Stats = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Settings:
    deadline_s: float = 0.5
    duration_s: float = 5.0
    ramp_s: float = 2.0
    burst: int = 96
    litellm_spec: str = bench.LITELLM_SPEC


@dataclass(frozen=True, slots=True)
class Row:
    target: str
    label: str  # "ramp", "1x", "2x", "4x"
    rate: int
    duration_s: float
    stats: Stats

    @property
    def goodput(self) -> float:
        return float(self.stats["good"]) / self.duration_s

    @property
    def refused(self) -> int:
        return sum(n for kind, n in self.stats["error_kinds"].items() if kind in REFUSED)

    @property
    def late(self) -> int:
        return int(self.stats["errors"]) - self.refused + int(self.stats["answered"]) - int(self.stats["good"])


def run(settings: Settings) -> None:
    print()
    print(f"== overload: goodput past saturation, each call's deadline {settings.deadline_s * 1000:.0f} ms ==")
    print(f"load average at start: {load_average()}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _local_path(tmp, settings)
        _remote_path(tmp, settings)
        _burst(tmp, settings)
    print(f"load average after the overload part: {load_average()}")


# -- 1. local path -----------------------------------------------------------------------


def _local_path(tmp: Path, settings: Settings) -> None:
    process, target = bench._start_gateway(tmp)
    try:
        rows = _ramp_and_overload("gateway", target, "", settings)
    finally:
        stop(process)
    _print_rows("local path (echo backend)", rows)


# -- 2. remote path ----------------------------------------------------------------------


def _remote_path(tmp: Path, settings: Settings) -> None:
    litellm_bin, note = bench._ensure_litellm(settings.litellm_spec)
    stand_in, origin = bench._start_stand_in()
    started: list[subprocess.Popen[bytes]] = [stand_in]
    rows: list[Row] = []
    try:
        gateway, target = bench._start_remote_gateway(tmp, origin)
        started.append(gateway)
        bench._load_in_process(target, 10, 1.0, f"openai/{bench.REMOTE_MODEL}")  # lazy imports, connections
        rows = _ramp_and_overload("gateway", target, f"openai/{bench.REMOTE_MODEL}", settings)
        stop(gateway)
        started.remove(gateway)
        if litellm_bin is not None:
            litellm = bench._start_litellm(litellm_bin, tmp, origin)
            if isinstance(litellm, str):
                note = litellm
            else:
                started.append(litellm[0])
                address = f"{litellm[1]}/v1/chat/completions"
                bench._load_in_process(address, 10, 1.0)
                for row in [r for r in rows if r.label != "ramp"]:
                    bench._wait_quiet(origin, bench.DRAIN_LIMIT_S)
                    stats = bench._load_in_process(
                        address, row.rate, settings.duration_s, deadline_s=settings.deadline_s
                    )
                    rows.append(Row("LiteLLM", row.label, row.rate, settings.duration_s, stats))
                    _progress(rows[-1])
    finally:
        for process in reversed(started):
            stop(process)
    print(f"LiteLLM: {note}")
    _print_rows("remote path (OpenAI stand-in)", rows)


# -- ramp, then 1x / 2x / 4x ---------------------------------------------------------------


def _ramp_and_overload(name: str, target: str, pin: str, settings: Settings) -> list[Row]:
    """Double the rate until goodput stops growing; the peak goodput is the saturation rate."""
    rows: list[Row] = []
    rate = RAMP_START
    while rate <= RAMP_LIMIT:
        stats = bench._load_in_process(target, rate, settings.ramp_s, pin, deadline_s=settings.deadline_s)
        rows.append(Row(name, "ramp", rate, settings.ramp_s, stats))
        _progress(rows[-1])
        if rows[-1].goodput < 0.9 * rate:
            break
        rate *= 2
    saturation = max(1, round(max(r.goodput for r in rows)))
    print(f"  {name}: saturation ~{saturation} req/s (peak goodput of the ramp)", flush=True)
    for factor in (1, 2, 4):
        stats = bench._load_in_process(
            target, saturation * factor, settings.duration_s, pin, deadline_s=settings.deadline_s
        )
        rows.append(Row(name, f"{factor}x", saturation * factor, settings.duration_s, stats))
        _progress(rows[-1])
    return rows


def _progress(row: Row) -> None:
    print(
        f"  {row.target:<8} {row.label:>4} {row.rate:>6} req/s offered: {row.goodput:.0f} good/s, "
        f"{row.refused} refused, {row.late} late; load average {load_average(one_minute=True)}",
        flush=True,
    )


def _print_rows(title: str, rows: list[Row]) -> None:
    print()
    print(f"-- {title} --")
    header = f"{'target':<8} {'run':>4} {'offered/s':>9} {'sent':>6} {'in time':>7} {'good/s':>7}"
    print(f"{header} {'refused':>7} {'late':>6} {'p99 ms':>8} {'of peak':>8}")
    for target in dict.fromkeys(r.target for r in rows):
        mine = [r for r in rows if r.target == target]
        peak = max(r.goodput for r in mine)
        for r in mine:
            s = r.stats
            line = f"{r.target:<8} {r.label:>4} {r.rate:>9} {s['sent']:>6} {s['good']:>7} {r.goodput:>7.0f}"
            share = f"{100 * r.goodput / peak:.0f}%" if peak else "-"
            print(f"{line} {r.refused:>7} {r.late:>6} {s['p99']:>8.1f} {share:>8}")
    print("(in time: answered within the deadline of the scheduled send; good/s: those per offered second;")
    print(" refused: RESOURCE_EXHAUSTED/UNAVAILABLE or HTTP 429/503; late: past the deadline or answered after it;")
    print(" p99: of the answers; of peak: good/s over the best good/s of that target in this table)")


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
        bench._wait_ready(target, process)
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
