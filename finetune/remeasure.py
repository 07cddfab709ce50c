"""`python -m finetune remeasure --on llamacpp`: a published adapter's card measured on the llama.cpp path.

The card's temperature and threshold were fitted on the transformers path's confidences. llama.cpp
serves the shipped Q4_1 file and computes them a little differently (docs/local_backends.md), so
this asks the same adapter (its adapter_model.gguf) the same validation, test and held-out rows on
the llama.cpp backend, as the gateway would, and runs the same evaluation (finetune.evaluate):
temperature and guaranteed threshold fitted on validation, figures on test and held-out, the base
model and majority baselines. The result is published as a new version of the adapter (the same
weights, a new card with `measured_on` the llama.cpp path and the model file), which the registry
serves from then on. The dataset is rebuilt as the training run built it and must match the card's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.data.datasets import DataError, TaskDataset
from finetune.evaluate.evaluation import Evaluation, evaluate
from finetune.evaluate.llamacpp_path import score_on_backend
from finetune.evaluate.scoring import Scored
from finetune.examples import TEST, TRAIN, VAL
from finetune.options import RunOptions
from finetune.task_run import EVAL_SPLITS, _finite, _spread, hold_back, load_dataset
from gateway.core.contracts import AdapterRef
from local_models.adapters import LLAMACPP, AdapterCard, MeasuredOn, read_card

log = logging.getLogger(__name__)

PATHS = (LLAMACPP,)  # the transformers path is the one `python -m finetune` trains and measures on
COPIED = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.gguf", "Modelfile")


@dataclass(frozen=True)
class Remeasured:
    folder: Path  # the new version
    card: AdapterCard
    evaluation: Evaluation


def remeasure(folder: Path, options: RunOptions, *, on: str = LLAMACPP, model_path: Path | None = None) -> Remeasured:
    """Measure the adapter in `folder` on the `on` path and publish it as a new version beside it."""
    if on not in PATHS:
        raise ValueError(f"--on {on!r}: one of {', '.join(PATHS)}")
    card = read_card(folder)
    dataset = load_dataset(card.task, options)
    _check_same_data(card, dataset)
    splits = {name: dataset.split(name) for name in (TRAIN, *EVAL_SPLITS)}
    # the threshold's rows are the validation rows training did not watch (its guarantee counts them)
    held_back = len(splits[VAL]) - (card.guarantee.rows if card.guarantee is not None else len(splits[VAL]))
    _, splits[VAL] = hold_back(splits[VAL], held_back)
    if card.guarantee is not None and len(splits[VAL]) != card.guarantee.rows:
        raise DataError(f"{card.task}: the card's threshold was fitted on {card.guarantee.rows} validation rows")
    model = model_path or _shipped_gguf()
    log.info("%s@%s: measuring on llama.cpp (%s)", card.name, card.version, model.name)
    adapter_scores, base_scores = asyncio.run(_score_llamacpp(card, folder, dataset, splits, options, model))
    measured = MeasuredOn(LLAMACPP, model.name, _sha256(model))
    return _publish(card, folder, dataset, splits, adapter_scores, base_scores, measured, options)


def newest_folder(adapters: Path, task: str) -> Path:
    """The adapter folder the gateway serves for `task` (its newest valid card)."""
    from local_models.adapters import AdapterRegistry

    registry = AdapterRegistry(adapters, base_sha256=None)
    registry.refresh()
    spec = registry.get(task)
    if spec is None or spec.adapter is None:
        raise DataError(f"{task}: no published adapter under {adapters}")
    return Path(spec.adapter.path)


async def _score_llamacpp(
    card: AdapterCard,
    folder: Path,
    dataset: TaskDataset,
    splits: Mapping[str, list[Any]],
    options: RunOptions,
    model: Path,
) -> tuple[dict[str, Scored], dict[str, Scored]]:
    """The adapter on every evaluation split, the base model (no adapter) on validation and test."""
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
    from local_models.model_store import EMBEDDED_NAME

    ref = AdapterRef(card.name, card.version, str(folder))
    settings = LlamaCppSettings(
        model, EMBEDDED_NAME, options.cache_dir / "llamacpp-adapters", threads=options.threads, adapters=(ref,)
    )
    backend = await asyncio.to_thread(LlamaCppBackend, settings)
    template, labels = dataset.template, dataset.labels
    try:
        adapter = {
            s: await score_on_backend(backend, ref, template, labels, splits[s]) for s in EVAL_SPLITS if splits[s]
        }
        base = {
            s: await score_on_backend(backend, None, template, labels, _spread(splits[s], options.base_max_examples))
            for s in (VAL, TEST)
            if splits[s]
        }
    finally:
        await backend.aclose()
    return adapter, base


def _publish(
    card: AdapterCard,
    folder: Path,
    dataset: TaskDataset,
    splits: Mapping[str, list[Any]],
    adapter_scores: Mapping[str, Scored],
    base_scores: Mapping[str, Scored],
    measured: MeasuredOn,
    options: RunOptions,
) -> Remeasured:
    from finetune.publish.card import new_version, remeasured_card
    from finetune.publish.export import discard, publish, staging_dir
    from finetune.publish.report import evaluation_lines
    from local_models.adapters import write_card

    version = new_version()
    staging = staging_dir(options.adapters, card.name, version)
    discard(staging)
    staging.mkdir(parents=True)
    try:
        for name in COPIED:
            if (folder / name).is_file():
                shutil.copy2(folder / name, staging / name)
        evaluation = evaluate(
            card.task,
            adapter_scores,
            base_scores,
            [ex.label for ex in splits[TRAIN]],
            target_accuracy=options.target_accuracy,
            min_kept=options.min_kept,
            level=options.confidence_level,
            plot_dir=staging,
        )
        new = remeasured_card(card, evaluation, measured, version)
        report = [
            f"# {card.task} adapter {version}",
            "",
            f"Adapter {card.name}@{card.version} (the same weights) measured on {measured.describe()}, "
            f"model sha256 {measured.model_sha256}; the card's temperature, threshold and figures are this path's.",
            "",
            *evaluation_lines(evaluation),
            "",
        ]
        (staging / "report.md").write_text("\n".join(report))
        (staging / "evaluation.json").write_text(json.dumps(_finite(evaluation.to_json()), indent=1))
        write_card(new, staging)
        for path in staging.iterdir():
            path.chmod(0o644)
        final = publish(staging, options.adapters, card.name, version)
    except BaseException:
        discard(staging)
        raise
    log.info("%s: published %s, measured on %s", card.task, final, measured.describe())
    return Remeasured(final, new, evaluation)


def _check_same_data(card: AdapterCard, dataset: TaskDataset) -> None:
    """The rebuilt dataset must be the one the card was measured on (same sources, split boundaries, counts)."""
    rebuilt = json.loads(json.dumps({k: v for k, v in dataset.card.items() if k not in ("prompt", "labels", "task")}))
    if rebuilt != json.loads(json.dumps(dict(card.data))):
        raise DataError(
            f"{card.task}: the dataset built now differs from the one on {card.name}@{card.version}'s card; "
            "give the training run's options (--seed, --max-val, --max-test, --max-heldout, --smoke, --data)"
        )
    if tuple(dataset.labels) != card.labels:
        raise DataError(f"{card.task}: labels {list(dataset.labels)} differ from the card's {list(card.labels)}")


def _shipped_gguf() -> Path:
    from local_models.model_store import find_gguf

    return find_gguf()


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
