"""CPU per forwarded request on the remote path, and where it goes.

Starts the OpenAI stand-in (tests/fakes) and the gateway with one provider
pointed at it, exactly as `bench_overhead.py --only remote` does, sends
`--rate` pinned requests per second for `--duration` seconds from a load
generator in its own process, and prints the gateway's process CPU time (user +
system, all threads) per request the stand-in answered, for each of `--rounds`
runs and their median. CPU time is less sensitive than wall time to other work
on a shared machine.

With `--profile`, a second gateway runs one more time with cProfile switched on
for the measured run only (SIGUSR1 starts it, SIGUSR2 stops it and writes the
file), and the top entries of its main thread (the event loop) by own time and
by cumulative time are printed. The profiler slows every call, so its absolute
times read high; compare entries with each other.

    python scripts/profile_remote.py [--rate 200] [--duration 4] [--rounds 3] [--profile] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import runpy
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from types import FrameType

from bench_harness import (
    REMOTE_MODEL,
    cpu_s,
    load_in_process,
    stand_in_count,
    start_remote_gateway,
    start_stand_in,
    wait_quiet,
)
from benchlib import load_average, stop


def main() -> None:
    if sys.argv[1:2] == ["--serve-profiled"]:
        _serve_profiled(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=200, help="offered requests per second")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs (the median is reported)")
    parser.add_argument("--profile", action="store_true", help="also run once under cProfile and print the top")
    parser.add_argument("--top", type=int, default=25, help="profile entries printed per ordering")
    args = parser.parse_args()
    print(f"load average at start: {load_average()}")
    pin = f"openai/{REMOTE_MODEL}"
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stand_in, origin = start_stand_in()
        try:
            figures, threads = _measure(tmp / "plain", origin, pin, args.rate, args.duration, args.rounds)
            print(f"cpu ms/request: {' '.join(f'{x:.2f}' for x in figures)}; median {statistics.median(figures):.2f}")
            print("by thread (ms/request, all rounds): " + ", ".join(f"{k} {v:.2f}" for k, v in threads.items()))
            if args.profile:
                out = tmp / "gateway.prof"
                wrap = (str(Path(__file__).resolve()), "--serve-profiled", str(out))
                _measure(tmp / "profiled", origin, pin, args.rate, args.duration, 1, wrap)
                print(_summary(out, args.top))
        finally:
            stand_in.send_signal(signal.SIGTERM)
            stand_in.wait(30)
    print(f"load average at the end: {load_average()}")


def _measure(
    tmp: Path, origin: str, pin: str, rate: int, duration: float, rounds: int, python_args: tuple[str, ...] = ()
) -> tuple[list[float], dict[str, float]]:
    """Gateway CPU ms per upstream request, one figure per round; and per thread over all rounds."""
    tmp.mkdir()
    gateway, target = start_remote_gateway(tmp, origin, python_args)
    figures = []
    total = 0
    try:
        load_in_process(target, min(rate, 50), 1.0, pin)  # first use: lazy imports, connections
        wait_quiet(origin)
        threads_before = _thread_cpu_s(gateway.pid)
        for _ in range(rounds):
            before, cpu_before = stand_in_count(origin), cpu_s(gateway.pid)
            if python_args:
                gateway.send_signal(signal.SIGUSR1)
            stats = load_in_process(target, rate, duration, pin)
            wait_quiet(origin)
            if python_args:
                gateway.send_signal(signal.SIGUSR2)
            upstream = stand_in_count(origin) - before
            total += upstream
            cpu = cpu_s(gateway.pid) - cpu_before
            figures.append(cpu * 1000 / upstream if upstream else float("nan"))
            print(
                f"  {rate} req/s offered, {stats['qps']:.0f} achieved, {stats['errors']:.0f} errors, "
                f"p50 {stats['p50']:.2f} ms; load average {load_average(one_minute=True)}",
                flush=True,
            )
        threads_after = _thread_cpu_s(gateway.pid)
    finally:
        stop(gateway, timeout_s=60)
    by_thread: dict[str, float] = {}
    for key, seconds in threads_after.items():
        spent = (seconds - threads_before.get(key, 0.0)) * 1000 / max(total, 1)
        name = "main (event loop)" if key[0] == gateway.pid else key[1]
        by_thread[name] = by_thread.get(name, 0.0) + spent
    return figures, {k: v for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1]) if v >= 0.005}


def _thread_cpu_s(pid: int) -> dict[tuple[int, str], float]:
    """CPU seconds of each thread of `pid`, keyed by (thread id, OS thread name)."""
    tick = os.sysconf("SC_CLK_TCK")
    times = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except (OSError, IndexError):
            continue
        times[(int(task.name), name)] = (int(fields[11]) + int(fields[12])) / tick
    return times


def _serve_profiled(out: Path, argv: list[str]) -> None:
    """Run `-m gateway ...` (argv) in this process; SIGUSR1 starts cProfile, SIGUSR2 stops it and writes `out`."""
    if argv[:1] != ["-m"] or len(argv) < 2:
        raise SystemExit("usage: profile_remote.py --serve-profiled OUT -m MODULE [ARGS...]")
    profiler = cProfile.Profile()

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    sys.argv = [argv[1], *argv[2:]]
    sys.path.insert(0, os.getcwd())
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


def _summary(profile: Path, top: int) -> str:
    if not profile.exists():
        return "no profile written (the gateway did not receive SIGUSR2)"
    out = io.StringIO()
    stats = pstats.Stats(str(profile), stream=out).strip_dirs()
    out.write(f"\n== cProfile of the gateway's main thread: top {top} by own time ==\n")
    stats.sort_stats("tottime").print_stats(top)
    out.write(f"\n== top {top} by cumulative time ==\n")
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
