"""LoRA training with peft: loss on the answer tokens only, bounded by steps and by wall time,
resumable from checkpoints, and runnable under `accelerate launch` for several GPUs.

The learning rate warms up, then follows a cosine over whichever runs out first, steps or
time, so a short budget still ends on a low learning rate. Given validation rows to watch,
training also stops once their loss has plateaued, so a task takes only the time it still
learns in and leaves the rest of the run's budget to the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from finetune.examples import Example
from finetune.settings import TrainResult, TrainSettings
from finetune.tokens import ChatEncoder, Encoded
from finetune.train.distributed import from_main, make_accelerator
from finetune.train.forward import decoder_and_head, hidden_states, shared_prefix_length

__all__ = ["AnswerLoss", "TrainResult", "TrainSettings", "learning_rate", "lora_model", "plateaued", "train"]

MONITOR_BATCH = 16

log = logging.getLogger(__name__)


class AnswerLoss(torch.nn.Module):
    """Mean cross-entropy of the answer tokens; the output head runs on those positions only."""

    def __init__(self, model: Any, pad_id: int) -> None:
        super().__init__()
        self.model = model
        self.pad_id = pad_id

    def forward(self, prefix: list[int], batch: list[Encoded]) -> torch.Tensor:
        decoder, head = decoder_and_head(self.model)
        device = next(self.model.parameters()).device
        n = len(prefix)
        rows = [list(e.prompt[n:]) + list(e.answer) for e in batch]
        hidden = hidden_states(decoder, prefix, rows, self.pad_id, device)
        row_idx, col_idx, targets = [], [], []
        for i, e in enumerate(batch):
            start = len(e.prompt) - n  # first answer token, in row coordinates
            for j, token in enumerate(e.answer):
                row_idx.append(i)
                col_idx.append(start + j - 1)  # the position that predicts it
                targets.append(token)
        logits = head(hidden[torch.tensor(row_idx, device=device), torch.tensor(col_idx, device=device)])
        return torch.nn.functional.cross_entropy(logits.float(), torch.tensor(targets, device=device))


def lora_model(base: Any, settings: TrainSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = list(settings.targets)
    if settings.targets == ("all-linear",):
        # peft accepts the "all-linear" shorthand only for every layer: name the modules when some are chosen
        targets = _linear_module_names(base) if settings.layers else "all-linear"
    config = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        layers_to_transform=list(settings.layers) or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, config)


def _linear_module_names(base: Any) -> list[str]:
    """Names of the linear layers inside the decoder blocks (the output head excluded)."""
    head = base.get_output_embeddings()
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in base.named_modules()
            if isinstance(module, torch.nn.Linear) and module is not head and "." in name
        }
    )


def learning_rate(settings: TrainSettings, step: int, elapsed_s: float) -> float:
    """Linear warm-up, then cosine to min_lr_ratio over max(step share, time share)."""
    if step < settings.warmup_steps:
        return settings.learning_rate * (step + 1) / settings.warmup_steps
    progress = step / settings.max_steps
    if settings.time_budget_s:
        progress = max(progress, elapsed_s / settings.time_budget_s)
    progress = min(1.0, progress)
    floor = settings.min_lr_ratio
    return settings.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def plateaued(curve: Sequence[tuple[int, float]], patience: int, min_delta: float) -> bool:
    """Whether the best of the last `patience` validation losses is less than `min_delta` (relative)
    under the best one before them."""
    if patience < 1 or len(curve) <= patience:
        return False
    before = min(loss for _, loss in curve[:-patience])
    recent = min(loss for _, loss in curve[-patience:])
    return recent > before * (1 - min_delta)


def train(
    model: Any,
    encoder: ChatEncoder,
    examples: Sequence[Example],
    settings: TrainSettings,
    checkpoint_dir: Path,
    *,
    pad_id: int,
    progress: bool = True,
    resume: bool = True,
    position: int = 0,
    accelerator: Any = None,
    monitor: Sequence[Example] = (),
) -> TrainResult:
    """Train `model` (a peft LoRA model) in place. Checkpoints go to checkpoint_dir.

    `monitor`: validation rows whose loss is checked every `settings.plateau_every` steps; training
    stops once it has plateaued (none: train until the steps or the time run out).
    Under `accelerate launch` every process calls this with the same settings and data; pass the
    run's Accelerator (default: a new one)."""
    usable = _fitting([encoder.encode(ex) for ex in examples], settings)
    if not usable:
        raise ValueError(f"no training example fits max_seq_len={settings.max_seq_len}")
    watched = _fitting([encoder.encode(ex) for ex in monitor], settings)
    loop = _Loop(model, usable, watched, settings, checkpoint_dir, pad_id, resume, accelerator or make_accelerator())
    resumed_from = loop.state.step
    stopped_by = loop.run(progress, position)
    state = loop.state
    log.info("trained %d steps in %.0f s (%s), last loss %.4f", state.step, state.elapsed, stopped_by, _tail(state))
    return TrainResult(
        steps=state.step,
        examples_seen=state.step * settings.batch_size * loop.world,
        seconds=state.elapsed,
        losses=tuple(state.losses),
        stopped_by=stopped_by,
        resumed_from_step=resumed_from,
        skipped_long=len(examples) - len(usable),
        trainable_params=loop.trainable_params,
        seconds_per_step=state.elapsed / state.step if state.step else 0.0,
        extra={
            "prefix_tokens": len(loop.prefix),
            "processes": loop.world,
            "watched_rows": len(watched),
            "validation_curve": [list(point) for point in state.curve],
        },
    )


def _fitting(encoded: list[Encoded], settings: TrainSettings) -> list[Encoded]:
    return [e for e in encoded if len(e.prompt) + len(e.answer) <= settings.max_seq_len]


class _Loop:
    """The optimisation loop and its checkpoints; one per train() call."""

    def __init__(
        self,
        model: Any,
        usable: list[Encoded],
        watched: list[Encoded],
        settings: TrainSettings,
        folder: Path,
        pad_id: int,
        resume: bool,
        accelerator: Any,
    ) -> None:
        self.accelerator = accelerator
        self.settings = settings
        self.folder = folder
        self.usable = usable
        self.watched = watched if settings.plateau_every > 0 else []
        self.prefix = (
            list(usable[0].prompt[: shared_prefix_length([e.prompt for e in usable])]) if settings.prefix_cache else []
        )
        data_key = hashlib.sha256(repr([(e.prompt, e.answer) for e in usable]).encode()).hexdigest()
        self.fingerprint = settings.fingerprint(data_key)
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.trainable_params = sum(p.numel() for p in trainable)
        optimizer = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
        self.state = _load_checkpoint(folder, self.fingerprint, model, optimizer) if resume else _State()
        self.module, self.optimizer = self.accelerator.prepare(AnswerLoss(model, pad_id), optimizer)
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.order = _Order(len(usable), settings.seed)

    def run(self, progress: bool, position: int) -> str:
        from tqdm.auto import tqdm  # type: ignore[import-untyped]

        settings, state = self.settings, self.state
        timed = bool(settings.time_budget_s)
        bar = tqdm(
            total=settings.time_budget_s if timed else settings.max_steps,
            initial=state.elapsed if timed else state.step,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]",
            unit="s" if timed else "step",
            desc=f"train {position}" if position else "train",
            position=position,
            disable=None if progress and self.accelerator.is_local_main_process else True,  # None: only on a terminal
            leave=False,
        )
        stopped_by = "done" if state.done else "steps"
        self.module.train()
        saved_at = state.elapsed
        step_s = 0.0
        try:
            while not state.done and state.step < settings.max_steps:
                # one clock for every process: the same learning rate, the same stop, the same saves
                state.elapsed, step_s = from_main(self.accelerator, [state.elapsed, step_s])
                if _out_of_time(settings, state.elapsed, step_s):
                    stopped_by = "budget"
                    break
                if state.elapsed - saved_at >= settings.checkpoint_every_s:
                    self.save()
                    saved_at = state.elapsed
                seconds, lr = self.step()
                step_s = seconds if step_s == 0 else 0.9 * step_s + 0.1 * seconds
                bar.update(seconds if timed else 1)
                bar.set_postfix(step=state.step, loss=f"{state.losses[-1]:.3f}", lr=f"{lr:.1e}", s_step=f"{step_s:.1f}")
                if self.watched and state.step % settings.plateau_every == 0:
                    started = time.perf_counter()
                    state.curve.append((state.step, self.validation_loss()))
                    state.elapsed += time.perf_counter() - started  # the budget pays for the checks too
                    if plateaued(state.curve, settings.plateau_patience, settings.plateau_min_delta):
                        stopped_by = "plateau"
                        log.info("validation loss plateaued at step %d: %s", state.step, _curve_text(state.curve))
                        break
        except KeyboardInterrupt:
            self.save()
            log.warning("interrupted: checkpoint saved in %s at step %d; run again to resume", self.folder, state.step)
            raise
        finally:
            bar.close()
        if not state.done:
            state.done = True
            self.save()
        self.module.eval()
        return stopped_by

    def step(self) -> tuple[float, float]:
        settings, state = self.settings, self.state
        started = time.perf_counter()
        lr = learning_rate(settings, state.step, state.elapsed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        indices = self.order.batch(state.step, settings.batch_size * self.world)
        mine = indices[self.rank * settings.batch_size : (self.rank + 1) * settings.batch_size]
        loss = self.module(self.prefix, [self.usable[i] for i in mine])
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        seconds = time.perf_counter() - started
        state.step += 1
        state.elapsed += seconds
        state.losses.append(float(self.accelerator.reduce(loss.detach(), reduction="mean")))  # the global batch's
        return seconds, lr

    def validation_loss(self) -> float:
        """Mean answer loss of the watched validation rows (the main process's figure on every process)."""
        module = self.accelerator.unwrap_model(self.module)
        module.eval()
        prefix = list(self.watched[0].prompt[: shared_prefix_length([e.prompt for e in self.watched])])
        total = 0.0
        with torch.no_grad():
            for start in range(0, len(self.watched), MONITOR_BATCH):
                batch = self.watched[start : start + MONITOR_BATCH]
                total += float(module(prefix if self.prefix else [], batch)) * len(batch)
        module.train()
        [loss] = from_main(self.accelerator, [total / len(self.watched)])
        return loss

    def save(self) -> None:
        _save_checkpoint(self.accelerator, self.folder, self.fingerprint, self.module, self.optimizer, self.state)


def _curve_text(curve: Sequence[tuple[int, float]]) -> str:
    return ", ".join(f"{step}: {loss:.4f}" for step, loss in curve)


def _tail(state: _State) -> float:
    tail = state.losses[-20:]
    return sum(tail) / len(tail) if tail else float("nan")


def _out_of_time(settings: TrainSettings, elapsed: float, step_s: float) -> bool:
    """Whether another step would overrun the budget."""
    budget = settings.time_budget_s
    return budget is not None and 0 < budget < elapsed + step_s


class _Order:
    """A fresh seeded shuffle per pass over the data; batch(step) is reproducible after a resume."""

    def __init__(self, n: int, seed: int) -> None:
        self._n = n
        self._seed = seed
        self._epoch = -1
        self._perm: list[int] = []

    def batch(self, step: int, size: int) -> list[int]:
        out = []
        for k in range(step * size, (step + 1) * size):
            epoch, pos = divmod(k, self._n)
            if epoch != self._epoch:
                self._perm = list(range(self._n))
                random.Random(self._seed * 1_000_003 + epoch).shuffle(self._perm)
                self._epoch = epoch
            out.append(self._perm[pos])
        return out


@dataclass
class _State:
    step: int = 0
    elapsed: float = 0.0
    losses: list[float] = field(default_factory=list)
    done: bool = False
    curve: list[tuple[int, float]] = field(default_factory=list)  # (step, validation loss) at each check


def _save_checkpoint(
    accelerator: Any, folder: Path, fingerprint: str, module: Any, optimizer: Any, state: _State
) -> None:
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return
    staging = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    accelerator.unwrap_model(module).model.save_pretrained(staging)
    torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    info = {"fingerprint": fingerprint, **asdict(state)}
    (staging / "state.json").write_text(json.dumps(info))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _load_checkpoint(folder: Path, fingerprint: str, model: Any, optimizer: Any) -> _State:
    path = folder / "state.json"
    if not path.is_file():
        return _State()
    info = json.loads(path.read_text())
    if info.get("fingerprint") != fingerprint:
        log.warning("checkpoint in %s is from other settings or data: starting afresh", folder)
        return _State()
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    curve = [(int(step), float(loss)) for step, loss in info.get("curve", [])]
    state = _State(info["step"], info["elapsed"], list(info["losses"]), bool(info["done"]), curve)
    log.info("resuming from %s at step %d (%.0f s trained)", folder, state.step, state.elapsed)
    return state
