"""The card of an embedding classifier: what it answers, how sure it must be, and what it promises.

The same figures as a LoRA adapter's card (local_models/adapters.py: labels, calibrated
temperature, the threshold with its guarantee, the evaluation's metrics, the data it was built
from), with `kind` "embedding-classifier", the embedding model it reads instead of a base model,
and the champion/challenger verdict against the LoRA adapter measured on the same rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.core.guarantee import METHOD, Guarantee

KIND = "embedding-classifier"
CARD_FILE = "card.json"
WEIGHTS_FILE = "classifier.npz"  # weights (dimensions, labels) and bias (labels,), float64


@dataclass(frozen=True, slots=True)
class ClassifierCard:
    name: str
    version: str
    task: str
    labels: tuple[str, ...]
    embedding_model: str  # e.g. all-MiniLM-L6-v2
    embedding_model_sha256: str  # content hash of its weights (local_models.adapters.model_content_hash)
    system: str  # the task's system prompt: a request that carries it is one this classifier answers
    threshold: float  # minimum calibrated confidence to keep an answer local; above 1: escalate all
    calibration_temperature: float
    guarantee: Guarantee
    metrics: Mapping[str, float] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    rivalry: Mapping[str, Any] = field(default_factory=dict)  # which kind won against the LoRA adapter, and why
    created_at: str = ""
    kind: str = KIND

    @property
    def target_accuracy(self) -> float:
        return self.guarantee.target

    def to_json(self) -> dict[str, Any]:
        g = self.guarantee
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "labels": list(self.labels),
            "embedding_model": self.embedding_model,
            "embedding_model_sha256": self.embedding_model_sha256,
            "prompt": {"system": self.system},
            "threshold": self.threshold if g.supported else None,  # null: every answer escalates
            "calibration_temperature": self.calibration_temperature,
            "target_accuracy": g.target,
            "guarantee": {
                "method": METHOD,
                "target": g.target,
                "level": g.level,
                "rows": g.rows,
                "kept": g.kept,
                "correct": g.correct,
                "bound": g.bound,
                "describe": g.describe(),
            },
            "metrics": dict(self.metrics),
            "data": dict(self.data),
            "training": dict(self.training),
            "rivalry": dict(self.rivalry),
            "created_at": self.created_at,
        }


def write_classifier_card(card: ClassifierCard, folder: Path) -> Path:
    path = folder / CARD_FILE
    path.write_text(json.dumps(_finite(card.to_json()), indent=1, allow_nan=False) + "\n")
    return path


def _finite(value: Any) -> Any:
    """JSON-safe: NaN and infinities -> null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
