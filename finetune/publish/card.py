"""The adapter card of a trained task, from its dataset card, training run and evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any

from finetune.evaluate.admission import heldout_verdict
from finetune.evaluate.evaluation import Evaluation
from finetune.examples import PromptTemplate
from finetune.settings import TrainResult, TrainSettings
from local_models.adapters import AdapterCard, MeasuredOn, PromptSpec


def new_version(now: datetime | None = None) -> str:
    """A sortable version: the UTC time, e.g. 20261126-023000."""
    return (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")


def build_card(
    *,
    name: str,
    version: str,
    task: str,
    template: PromptTemplate,
    dataset_card: Mapping[str, Any],
    evaluation: Evaluation,
    settings: TrainSettings,
    result: TrainResult,
    base_model: str,
    base_sha256: str,
    environment: Mapping[str, Any],
    created_at: datetime | None = None,
) -> AdapterCard:
    data = {k: v for k, v in dataset_card.items() if k not in ("prompt", "labels", "task")}
    training = {
        **asdict(settings),
        "steps": result.steps,
        "examples_seen": result.examples_seen,
        "seconds": round(result.seconds, 1),
        "seconds_per_step": round(result.seconds_per_step, 3),
        "stopped_by": result.stopped_by,
        "final_loss": round(sum(result.losses[-20:]) / max(1, len(result.losses[-20:])), 4),
        "trainable_params": result.trainable_params,
        "skipped_long_examples": result.skipped_long,
        **environment,
    }
    cal = evaluation.calibration
    return AdapterCard(
        name=name,
        version=version,
        task=task,
        labels=evaluation.labels,
        base_model=base_model,
        base_model_sha256=base_sha256,
        prompt=PromptSpec(template.system, template.user, str(dataset_card.get("input_format", ""))),
        threshold=cal.threshold,
        calibration_temperature=cal.temperature,
        target_accuracy=cal.target_accuracy,
        guarantee=cal.guarantee,
        metrics=card_metrics(evaluation),
        data=data,
        training=training,
        created_at=(created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
    )


def card_metrics(evaluation: Evaluation) -> dict[str, float]:
    """The card's `metrics`: the evaluation's figures and, where it applies, the held-out verdict."""
    metrics = evaluation.card_metrics()
    verdict = heldout_verdict(evaluation)
    if verdict is not None:  # the bar for the default run (finetune.evaluate.admission)
        metrics["heldout_majority_share"] = round(verdict.majority_share, 4)
        metrics["heldout_accuracy_bound"] = round(verdict.lower_bound, 4)
    return metrics


def remeasured_card(
    card: AdapterCard, evaluation: Evaluation, measured_on: MeasuredOn, version: str, created_at: datetime | None = None
) -> AdapterCard:
    """The same adapter as a new version whose temperature, threshold, guarantee and metrics are `evaluation`'s,
    measured on `measured_on`; what it is (task, prompt, labels, base, data, training) is the card's."""
    cal = evaluation.calibration
    return replace(
        card,
        version=version,
        threshold=cal.threshold,
        calibration_temperature=cal.temperature,
        target_accuracy=cal.target_accuracy,
        guarantee=cal.guarantee,
        metrics=card_metrics(evaluation),
        measured_on=measured_on,
        created_at=(created_at or datetime.now(UTC)).isoformat(timespec="seconds"),
    )
