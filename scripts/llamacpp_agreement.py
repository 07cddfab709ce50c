"""Do the llama.cpp and transformers paths give the same labels and confidences? Measured on adapters' test splits.

For each published adapter (the newest card per task under --adapters), the task's
dataset is built as `make finetune` builds it (same seed and split), and every
example of the chosen splits is asked of both in-process backends with the card's
prompt and labels, greedily: the transformers backend (the fp32 weights dequantised
from the shipped GGUF file, PEFT adapter) and the llama.cpp backend (the GGUF file
itself, the same adapter as a GGUF LoRA). Each answer is scored as the router scores
it (gateway.core.confidence with the card's calibration temperature).

Prints, per adapter and split: label agreement, the median, 90th percentile and
largest |confidence difference|, both paths' accuracy against the gold labels, and
whether the issue's bar holds (agreement >= 98 %, median |difference| <= 0.02).
Exits 1 when any adapter misses it.

    python scripts/llamacpp_agreement.py [--adapters artifacts/adapters] [--splits test] [--max N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchlib import ROOT, load_average

from gateway.core.confidence import Score, score
from gateway.core.contracts import AdapterRef, BackendCall, LocalBackend, Message, Role

AGREEMENT = 0.98
MEDIAN_DELTA = 0.02


@dataclass(frozen=True)
class Case:
    messages: tuple[Message, ...]
    gold: str


@dataclass(frozen=True)
class Outcome:
    adapter: str
    split: str
    cases: int
    agree: int
    deltas: tuple[float, ...]
    correct_transformers: int
    correct_llamacpp: int

    @property
    def agreement(self) -> float:
        return self.agree / self.cases if self.cases else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.deltas) if self.deltas else float("nan")

    @property
    def holds(self) -> bool:
        return self.agreement >= AGREEMENT and self.median <= MEDIAN_DELTA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapters", type=Path, default=ROOT / "artifacts" / "adapters", help="[adapters] dir")
    parser.add_argument("--splits", nargs="+", default=["test"], help="dataset splits (test, heldout, val)")
    parser.add_argument("--max", type=int, default=0, help="at most this many examples per split; 0 = all")
    parser.add_argument("--max-tokens", type=int, default=4, help="max_tokens of every call")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "trading-gateway")
    parser.add_argument("--model", type=Path, help="llamacpp: the GGUF model file (default: the shipped Q4_1 file)")
    parser.add_argument("--label-top-logprobs", type=int, default=40, help="llamacpp: alternatives on label calls")
    args = parser.parse_args()
    outcomes = asyncio.run(run(args))
    print(f"\nload average {load_average()}")
    print(
        "| adapter | split | cases | labels agree | median abs diff | p90 | max | accuracy transformers "
        "| accuracy llama.cpp | bar |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        p90 = statistics.quantiles(o.deltas, n=10)[-1] if len(o.deltas) > 1 else float("nan")
        print(
            f"| {o.adapter} | {o.split} | {o.cases} | {o.agree}/{o.cases} ({o.agreement:.1%}) | {o.median:.4f} "
            f"| {p90:.4f} | {max(o.deltas, default=float('nan')):.4f} | {o.correct_transformers / o.cases:.3f} "
            f"| {o.correct_llamacpp / o.cases:.3f} | {'holds' if o.holds else 'MISSED'} |"
        )
    if not outcomes:
        print("no published adapters under", args.adapters)
    sys.exit(0 if outcomes and all(o.holds for o in outcomes) else 1)


async def run(args: argparse.Namespace) -> list[Outcome]:
    from local_models.adapters import AdapterRegistry

    registry = AdapterRegistry(args.adapters, base_sha256=None)
    registry.refresh()
    specs = [spec for spec in registry.all() if spec.adapter is not None and spec.labels]
    if not specs:
        return []
    transformers, llamacpp = await asyncio.gather(
        asyncio.to_thread(make_transformers, args.cache_dir),
        asyncio.to_thread(make_llamacpp, args.cache_dir, args.model, args.label_top_logprobs),
    )
    outcomes = []
    try:
        for spec in specs:
            assert spec.adapter is not None
            card = registry.card(spec.name)
            assert card is not None
            for split in args.splits:
                cases = split_cases(card.task, split, card.prompt.system, card.prompt.user, args)
                answers = [
                    await answer(backend, spec.adapter, spec.labels, spec.calibration_temperature, cases, args)
                    for backend in (transformers, llamacpp)
                ]
                outcomes.append(compare(f"{spec.adapter.name}@{spec.adapter.version}", split, cases, *answers))
                print(f"{spec.name} {split}: {outcomes[-1].agree}/{outcomes[-1].cases} agree", flush=True)
    finally:
        await transformers.aclose()
        await llamacpp.aclose()
    return outcomes


def split_cases(task: str, split: str, system: str, user: str, args: argparse.Namespace) -> list[Case]:
    """The split's examples, prompted as the card says (the dataset built as `make finetune` builds it)."""
    from finetune.__main__ import options_from, parser
    from finetune.task_run import load_dataset

    finetune_args = parser().parse_args(["--tasks", task, "--cache-dir", str(args.cache_dir), "--no-progress"])
    _, options, _, _ = options_from(finetune_args, {"HOME": str(Path.home())})
    examples = load_dataset(task, options).split(split)
    if args.max:
        examples = examples[: args.max]
    return [
        Case((Message(Role.SYSTEM, system), Message(Role.USER, user.replace("{input}", ex.input))), ex.label)
        for ex in examples
    ]


async def answer(
    backend: LocalBackend,
    adapter: AdapterRef,
    labels: Sequence[str],
    temperature: float,
    cases: Sequence[Case],
    args: argparse.Namespace,
) -> list[Score]:
    """Every case asked at once (the backend batches them), scored as the router scores answers."""
    calls = [
        BackendCall(f"agree-{i}", case.messages, max_tokens=args.max_tokens, adapter=adapter, labels=tuple(labels))
        for i, case in enumerate(cases)
    ]
    completions = await asyncio.gather(*(backend.generate(call) for call in calls))
    return [score(c.text, c.tokens, labels, temperature=temperature) for c in completions]


def compare(name: str, split: str, cases: Sequence[Case], ref: Sequence[Score], other: Sequence[Score]) -> Outcome:
    pairs = list(zip(ref, other, strict=True))
    deltas = tuple(
        abs(a.confidence - b.confidence) for a, b in pairs if a.confidence is not None and b.confidence is not None
    )
    return Outcome(
        name,
        split,
        len(cases),
        sum(a.label == b.label for a, b in pairs),
        deltas,
        sum(s.label == case.gold for s, case in zip(ref, cases, strict=True)),
        sum(s.label == case.gold for s, case in zip(other, cases, strict=True)),
    )


def make_transformers(cache_dir: Path) -> LocalBackend:
    from local_models.model_store import EMBEDDED_NAME, ensure_embedded_model
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    return TransformersBackend(TransformersSettings(ensure_embedded_model(cache_dir), EMBEDDED_NAME))


def make_llamacpp(cache_dir: Path, model: Path | None, label_top_logprobs: int) -> LocalBackend:
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
    from local_models.model_store import EMBEDDED_NAME, find_gguf

    settings = LlamaCppSettings(
        model or find_gguf(), EMBEDDED_NAME, cache_dir / "llamacpp-adapters", label_top_logprobs=label_top_logprobs
    )
    return LlamaCppBackend(settings)


if __name__ == "__main__":
    main()
