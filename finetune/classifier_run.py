"""`python -m finetune.classifier_run --task sentiment`: the embedding-classifier kind of local model.

Builds the task's dataset as a LoRA run does, embeds every headline with all-MiniLM-L6-v2
(local_models/minilm.py, the gateway's own embedder), trains a multinomial logistic regression on
the train split (finetune/train/embedding_classifier.py), and measures it with the LoRA adapters'
evaluation (finetune/evaluate/evaluation.py): temperature fitted on validation, the threshold
chosen on validation with its guarantee (gateway/core/guarantee.py), the figures on test, on the
held-out split and on each held-out group. It is then compared with the task's newest LoRA adapter
measured on the same data file (finetune/evaluate/rivalry.py: KindRivalry), and the card records
which kind won and why.

The classifier, its card, evaluation and report are written under
`<artifacts>/classifiers/<task>/<version>/`, not into the adapter directory: the gateway does not
serve this kind yet.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from finetune.data.datasets import BuildOptions, TaskDataset
from finetune.evaluate.evaluation import Evaluation, evaluate, group_splits
from finetune.evaluate.label_scores import LabelScores, ProbScores
from finetune.evaluate.rivalry import KindRivalry, KindStanding, kind_standing
from finetune.examples import HELDOUT, TEST, TRAIN, VAL, Example
from finetune.options import RunOptions
from finetune.publish.card import new_version
from finetune.publish.classifier_card import KIND, WEIGHTS_FILE, ClassifierCard, write_classifier_card
from finetune.task_run import _finite, load_dataset
from finetune.train.embedding_classifier import STEPS, Fit, fit
from gateway.core.embedding import Embedder

log = logging.getLogger(__name__)

LORA = "lora"
SPLITS = (TRAIN, VAL, TEST, HELDOUT)
EMBED_BATCH = 64


@dataclass(frozen=True)
class ClassifierOutcome:
    folder: Path
    card: ClassifierCard
    evaluation: Evaluation
    rivalry: KindRivalry


def embed(embedder: Embedder, texts: Sequence[str], batch: int = EMBED_BATCH) -> npt.NDArray[np.float64]:
    """The unit vectors of `texts`, (rows, dimensions), in order."""

    async def run() -> list[tuple[float, ...]]:
        vectors: list[tuple[float, ...]] = []
        for start in range(0, len(texts), batch):
            vectors += (await embedder.embed(texts[start : start + batch])).vectors
        return vectors

    if not texts:
        return np.zeros((0, embedder.dimensions))
    return np.asarray(asyncio.run(run()), dtype=np.float64)


def measure(
    task: str,
    dataset: TaskDataset,
    vectors: dict[str, npt.NDArray[np.float64]],
    options: RunOptions,
    *,
    steps: int | None = None,
) -> tuple[Fit, Evaluation]:
    """Train on the train split's vectors and evaluate every split as a LoRA adapter is evaluated."""
    labels = dataset.labels
    splits = {name: dataset.split(name) for name in SPLITS}

    def gold(examples: list[Example]) -> npt.NDArray[np.int64]:
        return np.array([labels.index(ex.label) for ex in examples], dtype=np.int64)

    trained = fit(vectors[TRAIN], gold(splits[TRAIN]), labels, steps=STEPS if steps is None else steps)
    scores: dict[str, LabelScores] = {
        name: ProbScores(labels, gold(splits[name]), trained.model.probabilities(vectors[name]))
        for name in (VAL, TEST, HELDOUT)
        if splits[name]
    }
    if HELDOUT in scores:
        groups = [ex.group for ex in splits[HELDOUT]]
        scores |= group_splits(HELDOUT, scores[HELDOUT], groups, dataset.card.get("heldout_groups", ()))
    evaluation = evaluate(
        task,
        scores,
        {},
        [ex.label for ex in splits[TRAIN]],
        target_accuracy=options.target_accuracy,
        min_kept=options.min_kept,
        level=options.confidence_level,
    )
    return trained, evaluation


def lora_champion(task: str, adapters: Path, data_sha256: str, heldout_group: str) -> tuple[KindStanding | None, str]:
    """The newest LoRA card for `task` measured on the same data file (None and why not, when there is none)."""
    from local_models.adapters import AdapterCardError, read_card

    folder = adapters / task
    versions = (
        sorted((p for p in folder.iterdir() if (p / "card.json").is_file()), reverse=True) if folder.is_dir() else []
    )
    if not versions:
        return None, f"no LoRA adapter for {task} under {adapters}"
    for version in versions:
        try:
            card = read_card(version)
        except AdapterCardError as exc:
            log.warning("%s: %s", version, exc)
            continue
        if card.data.get("data_file", {}).get("sha256") != data_sha256:
            continue
        return kind_standing(LORA, card.version, card.metrics, heldout_group), ""
    return None, f"no LoRA adapter for {task} under {adapters} was measured on this data file"


def run(
    task: str,
    options: RunOptions,
    embedder: Embedder,
    embedder_sha256: str,
    *,
    out: Path | None = None,
    heldout_group: str = "unseen",
    steps: int | None = None,
) -> ClassifierOutcome:
    started = time.perf_counter()
    dataset = load_dataset(task, options)
    texts = {name: [ex.input for ex in dataset.split(name)] for name in SPLITS}
    vectors = {name: embed(embedder, texts[name]) for name in SPLITS}
    embed_s = time.perf_counter() - started
    trained, evaluation = measure(task, dataset, vectors, options, steps=steps)
    version = new_version()
    data_sha = str(dataset.card.get("data_file", {}).get("sha256", ""))
    metrics = evaluation.card_metrics()
    champion, note = lora_champion(task, options.adapters, data_sha, heldout_group)
    rivalry = KindRivalry(task, heldout_group, kind_standing(KIND, version, metrics, heldout_group), champion, note)
    cal = evaluation.calibration
    card = ClassifierCard(
        name=task,
        version=version,
        task=task,
        labels=dataset.labels,
        embedding_model=embedder.name,
        embedding_model_sha256=embedder_sha256,
        system=dataset.template.system,
        threshold=cal.threshold,
        calibration_temperature=cal.temperature,
        guarantee=cal.guarantee,
        metrics=metrics,
        data={k: v for k, v in dataset.card.items() if k not in ("prompt", "labels", "task")},
        training={
            "model": "multinomial logistic regression over mean-pooled, L2-normalised sentence vectors",
            "penalty": trained.penalty,
            "cv_loss": {f"{k:g}": round(v, 4) for k, v in trained.cv_loss.items()},
            "train_loss": round(trained.train_loss, 4),
            "steps": trained.steps,
            "train_rows": len(dataset.split(TRAIN)),
            "embed_seconds": round(embed_s, 1),
            "seconds": round(time.perf_counter() - started, 1),
        },
        rivalry=rivalry.to_json(),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    folder = (out or options.artifacts / "classifiers") / task / version
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / WEIGHTS_FILE, weights=trained.model.weights, bias=trained.model.bias)
    write_classifier_card(card, folder)
    (folder / "evaluation.json").write_text(json.dumps(_finite(evaluation.to_json()), indent=1))
    (folder / "report.md").write_text(report(card, evaluation) + "\n" + rivalry.markdown())
    log.info("%s: %s", task, rivalry.why())
    return ClassifierOutcome(folder, card, evaluation, rivalry)


def report(card: ClassifierCard, evaluation: Evaluation) -> str:
    lines = [
        f"# {card.task}: {KIND} {card.version}",
        "",
        f"Embedding model {card.embedding_model}; {card.training['train_rows']} training rows; "
        f"L2 penalty {card.training['penalty']:g} (5-fold cross-validation on train); "
        f"temperature {card.calibration_temperature:g} (fitted on validation).",
        "",
        f"Threshold: {card.guarantee.describe()}.",
        "",
        "| split | rows | accuracy | AUROC | kept | kept accuracy | kept bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, r in evaluation.adapter.items():
        lines.append(
            f"| {split} | {r.n} | {r.accuracy:.3f} | {r.auroc:.3f} | {r.kept:.0%} ({r.kept_rows}) | "
            f"{r.kept_accuracy:.3f} | {r.kept_bound:.3f} |"
        )
    if evaluation.majority is not None:
        lines += ["", f"Majority answer ({evaluation.majority_label}) on test: {evaluation.majority.accuracy:.3f}."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from local_models.adapters import model_content_hash
    from local_models.minilm import MiniLMEmbedder, MiniLMSettings, packaged_model_dir

    p = argparse.ArgumentParser(prog="python -m finetune.classifier_run", description=__doc__.split("\n")[0])
    p.add_argument("--task", default="sentiment")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    p.add_argument("--adapters-dir", type=Path, default=None, help="where the LoRA champion is looked for")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--sentiment-file", type=Path, default=None, help="headlines other than the packaged file")
    p.add_argument("--heldout-group", default="unseen", help="the held-out group the kinds are compared on")
    p.add_argument("--target", type=float, default=0.95)
    p.add_argument("--confidence-level", type=float, default=0.95)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cache = args.cache_dir or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trading-gateway"
    options = RunOptions(
        artifacts=args.artifacts,
        cache_dir=cache,
        adapters_dir=args.adapters_dir,
        target_accuracy=args.target,
        confidence_level=args.confidence_level,
        threads=args.threads,
        build=BuildOptions(sentiment_file=args.sentiment_file),
    )
    model_dir = packaged_model_dir()
    embedder = MiniLMEmbedder(MiniLMSettings(model_dir, threads=args.threads))
    outcome = run(args.task, options, embedder, model_content_hash(model_dir), heldout_group=args.heldout_group)
    print((outcome.folder / "report.md").read_text())
    print(f"written to {outcome.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
