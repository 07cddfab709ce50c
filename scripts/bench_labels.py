"""Label answers per second from the embedded model: the decode loop before, the label fast path after.

Runs the in-process transformers backend (SmolLM2-135M-Instruct on CPU) with a
published adapter on its own card's prompt: the newest sentiment adapter under
artifacts/adapters by default (--adapter DIR for another; the bare base model
with the sentiment prompt when none is published). Each variant loads its own
backend, one after another, in this process:

    before        label_fast_path = false: prefill, then the decode loop (today's path)
    fast          the label fast path with the default settings
    fast-2t       the fast path, prefill on 2 torch threads (prefill_threads = 2)
    fast-2t-int8  the same with quantize_int8 (opt-in; it changes answers), with --int8

For each variant: first the same set of prompts is answered once, all in flight
together, and its labels and confidences are compared with `before` (labels
equal, largest confidence difference). Then, at each concurrency level, that many
callers each send one request after another (closed loop) for --duration seconds.
Prints answers per second, p50/p99 latency, the ratio to `before` at the same level
and the load average after each level (the machine may be shared). Asserts nothing.

    python scripts/bench_labels.py [--levels 1 8 32] [--duration 20] [--int8] [--adapter DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import ROOT, load_average

from gateway.core.confidence import score
from gateway.core.contracts import AdapterRef, BackendCall, Message, Role

HEADLINES = ROOT / "finetune" / "data" / "sentiment_headlines.jsonl"
FALLBACK_SYSTEM = "Answer with one word: bullish, bearish or neutral."
FALLBACK_LABELS = ("bullish", "bearish", "neutral")
VARIANTS: dict[str, dict[str, Any]] = {
    "before": {"label_fast_path": False},
    "fast": {},
    "fast-2t": {"prefill_threads": 2},
    "fast-2t-int8": {"prefill_threads": 2, "quantize_int8": True},
}


@dataclass(frozen=True)
class Task:
    name: str
    system: str
    user: str  # contains "{input}"
    labels: tuple[str, ...]
    temperature: float  # the card's calibration temperature
    adapter: AdapterRef | None
    inputs: tuple[str, ...]


@dataclass
class Level:
    variant: str
    level: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    load: str = ""

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else float("nan")
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q * 100) - 1]


@dataclass(frozen=True)
class Agreement:
    variant: str
    equal: int
    total: int
    max_delta: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 32], help="concurrent requests")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per variant and level")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), help="default: before fast fast-2t")
    parser.add_argument("--int8", action="store_true", help="add fast-2t-int8 (quantize_int8 changes answers)")
    parser.add_argument("--adapter", type=Path, help="adapter folder with card.json (default: newest sentiment)")
    parser.add_argument("--max-tokens", type=int, default=8, help="max_tokens of every call")
    parser.add_argument("--max-batch", type=int, default=8, help="the backend's max_batch")
    parser.add_argument("--check", type=int, default=32, help="prompts answered once to compare labels")
    args = parser.parse_args()
    variants = args.variants or ["before", "fast", "fast-2t"] + (["fast-2t-int8"] if args.int8 else [])
    if "before" not in variants:
        variants.insert(0, "before")
    task = load_task(args.adapter)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_at_start = load_average()
    print(f"task {task.name}: {len(task.inputs)} inputs, labels {', '.join(task.labels)}; load {load_at_start}")
    levels: list[Level] = []
    agreements: list[Agreement] = []
    reference: list[tuple[str | None, float | None]] = []
    for variant in variants:
        answers, rows = asyncio.run(run_variant(variant, task, args))
        if variant == "before":
            reference = answers
        agreements.append(agree(variant, reference, answers))
        levels.extend(rows)
    print(markdown(args, task, variants, levels, agreements, started, load_at_start))


def load_task(adapter: Path | None) -> Task:
    folder = adapter or newest(ROOT / "artifacts" / "adapters" / "sentiment")
    rng = random.Random(13)
    headlines = tuple(json.loads(line)["prompt"] for line in HEADLINES.read_text().splitlines() if line.strip())
    if folder is None:
        return Task("sentiment prompt, base model", FALLBACK_SYSTEM, "{input}", FALLBACK_LABELS, 1.0, None, headlines)
    card = json.loads((folder / "card.json").read_text())
    ref = AdapterRef(card["name"], card["version"], str(folder))
    if card["task"] == "sentiment":
        inputs = headlines
    else:  # price tasks: 5 bars of 4 digits, as finetune.data.price_tasks encodes them
        inputs = tuple(" ".join(f"{rng.randrange(10_000):04d}" for _ in range(5)) for _ in range(400))
    return Task(
        f"{card['task']} ({card['name']} {card['version']})",
        card["prompt"]["system"],
        card["prompt"]["user"],
        tuple(card["labels"]),
        float(card.get("calibration_temperature", 1.0)),
        ref,
        inputs,
    )


def newest(root: Path) -> Path | None:
    cards = sorted(root.glob("*/card.json"))
    return cards[-1].parent if cards else None


def make_call(task: Task, i: int, max_tokens: int) -> BackendCall:
    text = task.user.replace("{input}", task.inputs[i % len(task.inputs)])
    messages = (Message(Role.SYSTEM, task.system), Message(Role.USER, text))
    return BackendCall(f"bench-{i}", messages, max_tokens=max_tokens, adapter=task.adapter, labels=task.labels)


async def run_variant(
    variant: str, task: Task, args: argparse.Namespace
) -> tuple[list[tuple[str | None, float | None]], list[Level]]:
    from local_models.model_store import EMBEDDED_NAME, ensure_embedded_model
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    model_dir = ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")
    settings = TransformersSettings(
        model_dir,
        EMBEDDED_NAME,
        max_batch=args.max_batch,
        max_in_flight=max(64, 2 * max(args.levels)),
        **VARIANTS[variant],
    )
    backend = await asyncio.to_thread(TransformersBackend, settings)
    try:
        checked = await asyncio.gather(
            *(backend.generate(make_call(task, i, args.max_tokens)) for i in range(args.check))
        )
        answers = []
        for completion in checked:
            s = score(completion.text, completion.tokens, task.labels, temperature=task.temperature)
            answers.append((s.label, s.confidence))
        rows = []
        for level in args.levels:
            row = await closed_loop(backend, task, variant, level, args)
            print(describe(row), flush=True)
            rows.append(row)
        return answers, rows
    finally:
        await backend.aclose()


async def closed_loop(backend: Any, task: Task, variant: str, level: int, args: argparse.Namespace) -> Level:
    row = Level(variant, level)
    counter = iter(range(10**9))
    deadline = time.perf_counter() + args.duration

    async def caller() -> None:
        while time.perf_counter() < deadline:
            call = make_call(task, next(counter), args.max_tokens)
            started = time.perf_counter()
            try:
                await backend.generate(call)
            except Exception:  # noqa: BLE001 - counted, the run goes on
                row.errors += 1
                continue
            row.latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(level)))
    row.seconds = time.perf_counter() - started
    row.load = load_average(one_minute=True)
    return row


def agree(
    variant: str,
    reference: Sequence[tuple[str | None, float | None]],
    answers: Sequence[tuple[str | None, float | None]],
) -> Agreement:
    equal = sum(a[0] == b[0] for a, b in zip(reference, answers, strict=True))
    deltas = [
        abs(a[1] - b[1]) for a, b in zip(reference, answers, strict=True) if a[1] is not None and b[1] is not None
    ]
    return Agreement(variant, equal, len(reference), max(deltas, default=0.0))


def describe(row: Level) -> str:
    return (
        f"{row.variant:>13} x{row.level:<3} {len(row.latencies):>5} answers {row.rate:7.2f}/s  "
        f"p50 {row.pct(0.5) * 1000:7.0f} ms  p99 {row.pct(0.99) * 1000:7.0f} ms  errors {row.errors}  load {row.load}"
    )


def markdown(
    args: argparse.Namespace,
    task: Task,
    variants: Sequence[str],
    levels: Sequence[Level],
    agreements: Sequence[Agreement],
    started: str,
    load_at_start: str,
) -> str:
    base = {row.level: row.rate for row in levels if row.variant == "before"}
    machine = f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    lines = [
        "",
        "## Label answers on CPU (embedded model)",
        "",
        f"Run {started} on {machine}; load average at the start {load_at_start}. Task {task.name}, "
        f"max_tokens {args.max_tokens}, max_batch {args.max_batch}, {args.duration:g} s per level, closed loop.",
        "",
        "| variant | concurrent | answers/s | vs before | p50 ms | p99 ms | errors | load (1 min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for variant in variants:
        for row in (r for r in levels if r.variant == variant):
            ratio = row.rate / base[row.level] if base.get(row.level) else float("nan")
            lines.append(
                f"| {variant} | {row.level} | {row.rate:.2f} | {ratio:.2f}x | {row.pct(0.5) * 1000:.0f} "
                f"| {row.pct(0.99) * 1000:.0f} | {row.errors} | {row.load} |"
            )
    lines += ["", "| variant | labels equal to before | largest confidence difference |", "|---|---|---|"]
    for a in agreements:
        lines.append(f"| {a.variant} | {a.equal}/{a.total} | {a.max_delta:.2g} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
