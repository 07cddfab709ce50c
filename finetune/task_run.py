"""One task end to end: build the data, score the base model (the baseline, and a measure of
how long evaluation will take), train a LoRA adapter in the time left, evaluate and
calibrate it, then publish the adapter folder (weights, card, Modelfile, report, plots)
where the gateway's registry picks it up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from finetune.data.datasets import BUILTIN_TASKS, DataError, TaskDataset, build_task, load_jsonl_task, write_dataset
from finetune.data.sources import DataStore
from finetune.evaluate.evaluation import Evaluation
from finetune.evaluate.rivalry import Rivalry, Standing
from finetune.examples import HELDOUT, TEST, TRAIN, VAL, Example
from finetune.options import RunOptions
from finetune.publish.report import TaskSummary, task_report
from finetune.settings import TrainResult, TrainSettings

log = logging.getLogger(__name__)

EVAL_SPLITS = (VAL, TEST, HELDOUT)


@dataclass(frozen=True)
class TaskOutcome:
    summary: TaskSummary
    adapter_dir: Path | None  # None: not published (the adapter collapsed to the label prior)
    report_path: Path


@dataclass(frozen=True, eq=False)
class Base:
    """The base model as loaded for one task."""

    folder: Path
    sha256: str
    tokenizer: Any
    model: Any


def resolve_base(base_model: str, cache_dir: Path) -> Path:
    """A local folder for the base: the embedded model, a folder, or a hub id (downloaded)."""
    if not base_model:
        from local_models.model_store import ensure_embedded_model

        return ensure_embedded_model(cache_dir)
    path = Path(base_model)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(base_model))


def load_base(options: RunOptions, device: Any) -> Base:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from local_models.adapters import model_content_hash

    folder = resolve_base(options.base_model, options.cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    return Base(folder, model_content_hash(folder), tokenizer, model.eval())


def load_dataset(task: str, options: RunOptions) -> TaskDataset:
    user = options.user_data
    if options.traffic is not None:
        return _traffic_dataset(task, options)
    if user is not None and user.name == task:
        return load_jsonl_task(user.path, user.name, labels=user.labels, system=user.system, seed=options.build.seed)
    return build_task(task, DataStore(options.cache_dir), options.build)


def _traffic_dataset(task: str, options: RunOptions) -> TaskDataset:
    """The gateway's captured rows for `task` (through its export), with a built-in task's labels and prompt."""
    from finetune.data.traffic import export_rows, traffic_task

    assert options.traffic is not None
    seed = build_task(task, DataStore(options.cache_dir), options.build) if task in BUILTIN_TASKS else None
    if options.traffic.with_seed and seed is None:
        raise DataError(f"{task}: --with-seed needs a built-in task ({', '.join(BUILTIN_TASKS)})")
    rows = export_rows(
        task, options.artifacts / "traffic" / f"{task}.jsonl", gateway_config=options.traffic.gateway_config
    )
    return traffic_task(
        rows,
        task,
        labels=seed.labels if seed is not None else (),
        system=seed.template.system if seed is not None else "",
        seed_examples=seed.split(TRAIN) if seed is not None and options.traffic.with_seed else (),
    )


def _champion(task: str, options: RunOptions, base: Base, scorer: _Scorer, test: list[Example]) -> Standing | None:
    """The adapter the gateway serves for `task` now, scored on the challenger's test split (None: none served)."""
    from peft import PeftModel

    from finetune.evaluate.rivalry import standing
    from local_models.adapters import AdapterRegistry

    registry = AdapterRegistry(options.adapters, base_sha256=base.sha256)
    registry.refresh()
    spec = registry.get(task)
    if spec is None or spec.adapter is None or not test:
        return None
    served = PeftModel.from_pretrained(base.model, spec.adapter.path)
    try:
        scored = scorer(served, test)
    finally:
        served.unload()  # the base again, for the challenger's LoRA
    log.info("%s: champion %s scored on the newest %d requests", task, spec.adapter.version, len(test))
    return standing(
        spec.adapter.version, scored, spec.calibration_temperature, options.target_accuracy, _min_kept(test, options)
    )


def _min_kept(test: list[Example], options: RunOptions) -> int:
    return min(options.min_kept, max(1, len(test) // 4))


class _Scorer:
    def __init__(self, base: Base, dataset: TaskDataset, options: RunOptions) -> None:
        from finetune.tokens import ChatEncoder

        self.encoder = ChatEncoder(base.tokenizer, dataset.template, dataset.labels)
        self._tokenizer = base.tokenizer
        self._options = options

    def __call__(self, model: Any, examples: list[Example]) -> Any:
        from finetune.evaluate.scoring import score_examples

        return score_examples(
            model,
            self._tokenizer,
            self.encoder,
            examples,
            batch_size=self._options.eval_batch_size,
            prefix_cache=self._options.settings.prefix_cache,
        )


def run_task(
    task: str, options: RunOptions, budget_s: float | None, run_dir: Path, accelerator: Any, position: int = 0
) -> TaskOutcome | None:
    """One task within budget_s seconds of wall time (None: bounded by steps only).

    Under `accelerate launch` every process trains; the main process alone writes the data,
    scores, publishes and returns the outcome (the others return None)."""
    from finetune.train.distributed import from_main
    from finetune.train.lora import lora_model, train

    main = accelerator.is_main_process
    started = time.perf_counter()
    dataset = load_dataset(task, options)
    splits = {name: dataset.split(name) for name in (TRAIN, *EVAL_SPLITS)}
    watched, splits[VAL] = hold_back(splits[VAL], options.watched_rows)
    base = load_base(options, accelerator.device)
    scorer = _Scorer(base, dataset, options)
    base_scores: dict[str, Any] = {}
    champion: Standing | None = None
    base_eval_s, train_budget = 0.0, -1.0  # -1: bounded by steps only
    if main:
        write_dataset(dataset, run_dir / task / "data")
        log.info("%s: %s", task, {k: len(v) for k, v in splits.items()})
        eval_started = time.perf_counter()
        base_scores = {
            s: scorer(base.model, _spread(splits[s], options.base_max_examples)) for s in (VAL, TEST) if splits[s]
        }
        if options.traffic is not None:
            champion = _champion(task, options, base, scorer, splits[TEST])
        base_eval_s = time.perf_counter() - eval_started
        per_example = base_eval_s / max(1, sum(len(v) for v in base_scores.values()))
        if budget_s is not None:
            # the adapter adds compute over the bare base, and plots and publishing take a few seconds
            eval_estimate = 1.25 * per_example * sum(len(splits[s]) for s in EVAL_SPLITS) + 15.0
            train_budget = max(0.1 * budget_s, budget_s - (time.perf_counter() - started) - eval_estimate)
    [train_budget] = from_main(accelerator, [train_budget])
    settings = replace(options.settings_for(task), time_budget_s=None if train_budget < 0 else train_budget)
    import torch

    torch.manual_seed(settings.seed)  # the LoRA weights start the same for the same seed
    peft_model = lora_model(base.model, settings)
    checkpoint = options.artifacts / "checkpoints" / task
    pad_id = base.tokenizer.pad_token_id if base.tokenizer.pad_token_id is not None else base.tokenizer.eos_token_id
    result = train(
        peft_model,
        scorer.encoder,
        splits[TRAIN],
        settings,
        checkpoint,
        pad_id=pad_id,
        progress=options.progress,
        resume=options.resume,
        position=position,
        accelerator=accelerator,
        monitor=watched,
    )
    if not main:
        return None
    eval_started = time.perf_counter()
    adapter_scores = {s: scorer(peft_model, splits[s]) for s in EVAL_SPLITS if splits[s]}
    from finetune.evaluate.evaluation import evaluate, group_splits

    if HELDOUT in adapter_scores:  # a task whose held-out split mixes groups reports each (sentiment: unseen)
        groups = [ex.group for ex in splits[HELDOUT]]
        adapter_scores |= group_splits(HELDOUT, adapter_scores[HELDOUT], groups, dataset.card.get("heldout_groups", ()))

    def assess(plot_dir: Path) -> Evaluation:
        return evaluate(
            task,
            adapter_scores,
            base_scores,
            [ex.label for ex in splits[TRAIN]],
            target_accuracy=options.target_accuracy,
            min_kept=options.min_kept,
            level=options.confidence_level,
            plot_dir=plot_dir,
        )

    outcome = _publish(
        task,
        dataset,
        base,
        peft_model,
        settings,
        result,
        assess,
        options,
        run_dir,
        (started, eval_started, base_eval_s),
        contest=(champion, adapter_scores.get(TEST)) if options.traffic is not None else None,
    )
    shutil.rmtree(checkpoint, ignore_errors=True)  # published: a re-run trains a new version
    return outcome


def _publish(
    task: str,
    dataset: TaskDataset,
    base: Base,
    peft_model: Any,
    settings: TrainSettings,
    result: TrainResult,
    assess: Any,
    options: RunOptions,
    run_dir: Path,
    clocks: tuple[float, float, float],
    *,
    contest: tuple[Standing | None, Any] | None = None,
) -> TaskOutcome:
    """Write the adapter folder under a dot-name, then rename it into place in one step; an adapter
    that collapsed to the label prior is reported but not published (unless options say so), and
    one trained from traffic only when it beats the champion (`contest`: its standing, the test scores)."""
    from finetune.evaluate.evaluation import collapse
    from finetune.publish.card import build_card, new_version
    from finetune.publish.export import (
        check_vllm_folder,
        discard,
        publish,
        staging_dir,
        write_gguf_adapter,
        write_modelfile,
    )
    from local_models.adapters import write_card

    started, eval_started, base_eval_s = clocks
    version = new_version()
    staging = staging_dir(options.adapters, task, version)
    discard(staging)
    staging.mkdir(parents=True)
    try:
        evaluation = assess(staging)
        eval_s = base_eval_s + time.perf_counter() - eval_started
        peft_model.save_pretrained(staging)
        (staging / "README.md").unlink(missing_ok=True)  # peft's template model card; card.json + report.md say it
        problems = check_vllm_folder(staging)
        if problems:
            log.warning("%s: vLLM would not serve this adapter: %s", task, problems)
        for problem in write_gguf_adapter(staging, base.folder):  # llama.cpp's form, which the Modelfile names
            log.warning("%s: %s", task, problem)
        write_modelfile(staging, options.ollama_from or str(base.folder.resolve()), dataset.template.system)
        collapsed = collapse(evaluation)
        rivalry = _rivalry(contest, evaluation, dataset, options)
        summary = TaskSummary(
            task,
            version,
            evaluation,
            result,
            time.perf_counter() - started,
            eval_s,
            collapse=collapsed,
            published=(not collapsed or options.publish_collapsed) and (rivalry is None or rivalry.challenger_wins),
            learning_rate=settings.learning_rate,
        )
        card = build_card(
            name=task,
            version=version,
            task=task,
            template=dataset.template,
            dataset_card=dataset.card,
            evaluation=evaluation,
            settings=settings,
            result=result,
            base_model=options.base_model or base.folder.name,
            base_sha256=base.sha256,
            environment=_environment(options, result.extra),
        )
        report = task_report(summary, dataset.card, asdict(settings))
        if rivalry is not None:
            report += "\n" + rivalry.markdown()
            log.info("%s", rivalry.line(task))
        (staging / "report.md").write_text(report)
        (staging / "evaluation.json").write_text(json.dumps(_finite(evaluation.to_json()), indent=1))
        write_card(card, staging)
        for path in staging.iterdir():
            path.chmod(0o644)  # peft writes the weights owner-only; servers may run as another user
        task_dir = run_dir / task
        task_dir.mkdir(parents=True, exist_ok=True)
        if not summary.published:
            lost = rivalry is not None and not rivalry.challenger_wins
            return _unpublished(summary, staging, task_dir, report, keep=lost)
        final = publish(staging, options.adapters, task, version)
    except BaseException:
        discard(staging)
        raise
    (task_dir / "report.md").write_text(report.replace("](", f"]({os.path.relpath(final, task_dir)}/"))
    if summary.collapse:
        log.warning("%s", summary.collapse_line())
    log.info("%s: published %s (%.0f s)", task, final, summary.seconds_total)
    return TaskOutcome(summary, final, task_dir / "report.md")


def _unpublished(summary: TaskSummary, staging: Path, task_dir: Path, report: str, *, keep: bool) -> TaskOutcome:
    """The report and its plots stay with the run; the gateway never sees this adapter. A challenger that
    lost to the champion (`keep`) is kept with the run; one that collapsed is discarded."""
    from finetune.publish.export import discard

    for name in summary.evaluation.plots.values():
        shutil.copy2(staging / name, task_dir / name)
    (task_dir / "report.md").write_text(report)
    if summary.collapse:
        log.warning("%s", summary.collapse_line())
    if keep:
        kept = task_dir / "challenger"
        discard(kept)
        staging.rename(kept)
        log.warning("%s: the challenger is kept at %s, not published", summary.task, kept)
    else:
        discard(staging)
    return TaskOutcome(summary, None, task_dir / "report.md")


def _rivalry(
    contest: tuple[Standing | None, Any] | None, evaluation: Evaluation, dataset: TaskDataset, options: RunOptions
) -> Rivalry | None:
    if contest is None or contest[1] is None:
        return None
    from finetune.evaluate.rivalry import Rivalry, standing

    champion, test_scores = contest
    test = dataset.split(TEST)
    temperature = evaluation.calibration.temperature
    challenger = standing("challenger", test_scores, temperature, options.target_accuracy, _min_kept(test, options))
    return Rivalry(options.target_accuracy, len(test), challenger, champion)


def hold_back(val: list[Example], n: int) -> tuple[list[Example], list[Example]]:
    """n validation rows, evenly spread, for watching training (its plateau), and the rest, which
    alone fit the calibration and the threshold, so the stopping point never touches the guarantee's
    rows. None are held back from fewer than 5n rows: small splits keep every row for the threshold."""
    if n <= 0 or len(val) < 5 * n:
        return [], val
    picked = {round(i * (len(val) - 1) / (n - 1)) for i in range(n)} if n > 1 else {0}
    return [ex for i, ex in enumerate(val) if i in picked], [ex for i, ex in enumerate(val) if i not in picked]


def _spread(items: list[Example], n: int) -> list[Example]:
    """At most n items, evenly spaced (splits are in source and time order: a prefix would be biased)."""
    if len(items) <= n:
        return items
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)] if n > 1 else items[:n]


def _finite(value: Any) -> Any:
    """JSON-safe: NaN -> null, tuples -> lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _environment(options: RunOptions, extra: Mapping[str, Any]) -> dict[str, Any]:
    import peft
    import torch
    import transformers

    return {
        "threads": options.threads,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        **extra,
    }
