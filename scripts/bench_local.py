"""The in-process local backends side by side: llama.cpp (xllamacpp, the GGUF file) against transformers.

One run, same prompts, each backend in its own process one after the other (so each RSS is
its own and they never compete for the cores):

- decode: one free-text stream at a time (greedy, --decode-tokens tokens), tokens per
  second after the first token, and the time to the first token (TTFT); median of --decode-runs;
- labels: the same label prompts as `make bench-labels` (the newest published sentiment
  adapter's card, or the base model with the sentiment prompt), closed loop at each
  --levels concurrency for --duration seconds: answers per second, p50 and p99;
- the labels and confidences of --check prompts, compared between the two backends;
- RSS: resident memory at the end of the run (model loaded), and its peak.

Prints each backend's figures, llamacpp / transformers ratios, the load average before and
after each backend (run it on a quiet machine: with other work on the cores the figures mostly
measure the scheduler), and the issue's targets (>= 60 tokens/s single stream; >= 3x the
transformers label fast path's answers/s at 32 concurrent). Asserts nothing.

    python scripts/bench_local.py [--levels 1 8 32] [--duration 20] [--decode-runs 3] [--slots 8] [--threads 1]
        [--llamacpp-model FILE]   # e.g. the F16 file scripts/gguf_dequantize.py writes
    make bench-local ARGS="--duration 30"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench_labels import Level, closed_loop, describe, load_task, make_call
from benchlib import ROOT, load_average

from gateway.core.confidence import score
from gateway.core.contracts import BackendCall, Completion, Delta, LocalBackend, Message, Role

BACKENDS = ("transformers", "llamacpp")
DECODE_PROMPT = (Message(Role.USER, "Count from 1 to 200, separated by commas."),)
DECODE_TARGET = 60.0  # tokens/s, single stream
LABEL_TARGET = 3.0  # x the transformers label fast path at 32 concurrent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrent label requests")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per label level")
    parser.add_argument("--decode-runs", type=int, default=3, help="single-stream decode runs (median)")
    parser.add_argument("--decode-tokens", type=int, default=64, help="max_tokens of a decode run")
    parser.add_argument("--max-tokens", type=int, default=8, help="max_tokens of a label call")
    parser.add_argument("--check", type=int, default=32, help="label prompts compared between the backends")
    parser.add_argument("--adapter", type=Path, help="adapter folder with card.json (default: newest sentiment)")
    parser.add_argument("--slots", type=int, default=8, help="llamacpp: sequences decoded together")
    parser.add_argument("--threads", type=int, default=1, help="llamacpp threads (decode and prompt)")
    parser.add_argument("--llamacpp-model", type=Path, help="llamacpp: a GGUF file (default: the shipped Q4_1 file)")
    parser.add_argument("--one", choices=BACKENDS, help=argparse.SUPPRESS)  # the child process: one backend
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(measure(args.one, args))))
        return
    task = load_task(args.adapter)
    print(f"task {task.name}; {os.cpu_count()} cores, {platform.processor() or platform.machine()}", flush=True)
    results: dict[str, dict[str, Any]] = {}
    for backend in args.backends:
        before = load_average()
        print(f"\n{backend}: load before {before}", flush=True)
        child = [sys.executable, __file__, "--one", backend, *sys.argv[1:]]
        done = subprocess.run(child, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True)
        results[backend] = json.loads(done.stdout.strip().splitlines()[-1])
        results[backend]["load"] = f"{before} -> {load_average()}"
    print(report(results, args))


async def measure(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """One backend in this process: decode, the check prompts, label levels, RSS."""
    task = load_task(args.adapter)
    backend = await asyncio.to_thread(build, kind, args)
    try:
        decode = [await decode_run(backend, args.decode_tokens) for _ in range(args.decode_runs)]
        checked = await asyncio.gather(
            *(backend.generate(make_call(task, i, args.max_tokens)) for i in range(args.check))
        )
        answers = [score(c.text, c.tokens, task.labels, temperature=task.temperature) for c in checked]
        levels = []
        for level in args.levels:
            row = await closed_loop(backend, task, kind, level, args)
            print(describe(row), file=sys.stderr, flush=True)
            levels.append(row)
        rss = rss_mib()  # with the model loaded and warm
    finally:
        await backend.aclose()
    return {
        "decode_tok_s": statistics.median(d[0] for d in decode),
        "ttft_ms": statistics.median(d[1] for d in decode) * 1000,
        "levels": {str(r.level): level_json(r) for r in levels},
        "answers": [(a.label, a.confidence) for a in answers],
        "rss_mib": rss,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def build(kind: str, args: argparse.Namespace) -> LocalBackend:
    cache = Path.home() / ".cache" / "trading-gateway"
    in_flight = max(64, 2 * max(args.levels))
    if kind == "llamacpp":
        from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
        from local_models.model_store import EMBEDDED_NAME, find_gguf

        settings = LlamaCppSettings(
            args.llamacpp_model or find_gguf(),
            EMBEDDED_NAME,
            cache / "llamacpp-adapters",
            slots=args.slots,
            threads=args.threads,
            batch_threads=args.threads,
            max_in_flight=in_flight,
        )
        return LlamaCppBackend(settings)
    from local_models.model_store import EMBEDDED_NAME, ensure_embedded_model
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    return TransformersBackend(
        TransformersSettings(ensure_embedded_model(cache), EMBEDDED_NAME, max_in_flight=in_flight, prefill_threads=2)
    )


async def decode_run(backend: LocalBackend, max_tokens: int) -> tuple[float, float]:
    """(tokens per second after the first, seconds to the first token) of one greedy free-text stream."""
    started = time.perf_counter()
    first = 0.0
    completion: Completion | None = None
    async for event in backend.stream(BackendCall("decode", DECODE_PROMPT, max_tokens=max_tokens)):
        if isinstance(event, Delta) and not first:
            first = time.perf_counter()
        elif isinstance(event, Completion):
            completion = event
    ended = time.perf_counter()
    tokens = completion.usage.completion_tokens if completion is not None else 0
    rate = (tokens - 1) / (ended - first) if tokens > 1 and ended > first else float("nan")
    return rate, first - started


def level_json(row: Level) -> dict[str, float]:
    return {"rate": row.rate, "p50_ms": row.pct(0.5) * 1000, "p99_ms": row.pct(0.99) * 1000, "errors": row.errors}


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    names = list(results)
    lines = ["", "| figure | " + " | ".join(names) + (" | llamacpp / transformers |" if len(names) == 2 else " |")]
    lines.append("|---" * (len(names) + 1 + (len(names) == 2)) + "|")

    def row(label: str, values: Sequence[float], fmt: str) -> None:
        cells = [format(v, fmt) for v in values]
        ratio = [f"{values[1] / values[0]:.2f}x" if values[0] else "n/a"] if len(values) == 2 else []
        lines.append(f"| {label} | " + " | ".join(cells + ratio) + " |")

    row("decode tokens/s (1 stream)", [results[n]["decode_tok_s"] for n in names], ".1f")
    row("time to first token, ms", [results[n]["ttft_ms"] for n in names], ".0f")
    for level in args.levels:
        for key, label, fmt in (("rate", "answers/s", ".2f"), ("p50_ms", "p50 ms", ".0f"), ("p99_ms", "p99 ms", ".0f")):
            row(f"labels x{level}: {label}", [results[n]["levels"][str(level)][key] for n in names], fmt)
    row("RSS at the end, MiB", [results[n]["rss_mib"] for n in names], ".0f")
    row("peak RSS, MiB", [results[n]["peak_rss_mib"] for n in names], ".0f")
    lines += ["", *(f"load average {n}: {results[n]['load']}" for n in names)]
    if set(names) == set(BACKENDS):
        lines += targets(results, args)
    return "\n".join(lines)


def targets(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    t, ll = results["transformers"], results["llamacpp"]
    pairs = list(zip(t["answers"], ll["answers"], strict=True))
    same = sum(a[0] == b[0] for a, b in pairs)
    deltas = [abs(a[1] - b[1]) for a, b in pairs if a[1] is not None and b[1] is not None]
    out = [
        f"labels equal on {same}/{len(pairs)} check prompts; median |confidence difference| "
        f"{statistics.median(deltas) if deltas else float('nan'):.4f}",
        f"target single stream >= {DECODE_TARGET:.0f} tokens/s: {ll['decode_tok_s']:.1f} "
        f"({'met' if ll['decode_tok_s'] >= DECODE_TARGET else 'missed'})",
    ]
    top = str(max(args.levels))
    if top in t["levels"] and t["levels"][top]["rate"]:
        ratio = ll["levels"][top]["rate"] / t["levels"][top]["rate"]
        out.append(
            f"target labels x{top} >= {LABEL_TARGET:.0f}x transformers: {ratio:.2f}x "
            f"({'met' if ratio >= LABEL_TARGET else 'missed'})"
        )
    return out


if __name__ == "__main__":
    main()
