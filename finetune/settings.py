"""Training settings and results: plain values, no torch (the CLI and reports import them)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TrainSettings:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    targets: tuple[str, ...] = ("all-linear",)  # or module names, e.g. ("q_proj", "v_proj")
    layers: tuple[int, ...] = ()  # decoder layers to adapt; empty = all
    learning_rate: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    batch_size: int = 4
    max_steps: int = 2000
    max_seq_len: int = 256  # longer examples are left out of training (counted in the result)
    time_budget_s: float | None = None
    seed: int = 0
    checkpoint_every_s: float = 60.0
    prefix_cache: bool = True
    # stop once the validation loss has plateaued: checked every `plateau_every` steps (0: never) on
    # rows held back from the threshold's; plateaued when the best of the last `plateau_patience`
    # checks is less than `plateau_min_delta` (relative) under the best before them
    plateau_every: int = 40
    plateau_patience: int = 3
    plateau_min_delta: float = 0.01

    def fingerprint(self, extra: str = "") -> str:
        """Identifies a training run for resuming: settings (budget excluded) + data."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("time_budget_s", "checkpoint_every_s")}
        return hashlib.sha256((json.dumps(fields, sort_keys=True) + extra).encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class TrainResult:
    steps: int
    examples_seen: int
    seconds: float  # training time, resumed runs included
    losses: tuple[float, ...]  # one per step
    stopped_by: str  # "steps" | "budget" | "plateau" | "done" (a finished checkpoint was found)
    resumed_from_step: int = 0
    skipped_long: int = 0  # training examples longer than max_seq_len
    trainable_params: int = 0
    seconds_per_step: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
