"""Markdown: one report per trained task, and the results table of a whole run."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from finetune.evaluate.admission import heldout_verdict
from finetune.evaluate.evaluation import Evaluation, SplitReport
from finetune.examples import TEST
from finetune.settings import TrainResult
from gateway.core.guarantee import METHOD, Guarantee


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One row of the results table."""

    task: str
    version: str
    evaluation: Evaluation
    train: TrainResult
    seconds_total: float
    seconds_eval: float
    collapse: str = ""  # why the adapter looks like it learned the label prior ("" when it does not)
    published: bool = True
    learning_rate: float = 0.0  # the peak rate this adapter trained at (for the collapse advice)

    def collapse_line(self) -> str:
        """The run summary's line about a collapsed adapter ("" when it is not)."""
        if not self.collapse:
            return ""
        task = self.evaluation.task
        verdict = "published anyway (--publish-collapsed)" if self.published else "NOT published"
        lr = self.learning_rate
        flag = f"--lr {lr / 3:.1g}" if lr else "--lr 0.001"
        now = f" than this run's {lr:g}" if lr else ""
        return (
            f"{task}: {verdict}: the adapter did not learn the task, it learned the label prior: "
            f"{self.collapse}. Try a lower learning rate{now}, e.g. `python -m finetune --tasks {task} {flag}`, "
            "or a longer budget (FINETUNE_BUDGET=1h)."
        )


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.0f}%"


def task_report(summary: TaskSummary, dataset_card: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    ev, tr = summary.evaluation, summary.train
    lines = [
        f"# {ev.task} adapter {summary.version}",
        "",
        f"Labels: {', '.join(ev.labels)}. Rule: {dataset_card.get('rule', '')}.",
        f"Input: {dataset_card.get('input_format', '')}. System prompt: `{dataset_card['prompt']['system']}`.",
        "",
        "## Training",
        "",
        f"- {tr.steps} steps ({tr.examples_seen} examples, {tr.seconds:.0f} s, {tr.seconds_per_step:.2f} s/step), "
        f"stopped by {tr.stopped_by}; resumed from step {tr.resumed_from_step}",
        f"- loss: first {_f(tr.losses[0] if tr.losses else float('nan'))}, "
        f"mean of last 20 {_f(_mean(tr.losses[-20:]))}",
        *_curve_lines(tr),
        f"- LoRA r={settings.get('rank')} alpha={settings.get('alpha')} targets={settings.get('targets')} "
        f"lr={settings.get('learning_rate')} batch={settings.get('batch_size')}; "
        f"{tr.trainable_params:,} trainable parameters",
        "",
        *evaluation_lines(ev),
    ]
    if summary.collapse:
        lines += ["", "## Collapse", "", summary.collapse_line()]
    lines += [
        "",
        f"Total time for this task: {summary.seconds_total:.0f} s (evaluation {summary.seconds_eval:.0f} s).",
        "",
    ]
    return "\n".join(lines)


def evaluation_lines(ev: Evaluation) -> list[str]:
    """The report's calibration, results, confusion, plots and held-out verdict."""
    cal = ev.calibration
    lines = [
        "## Calibration (fitted on validation)",
        "",
        f"- temperature T = {cal.temperature:g}",
        f"- {cal.guarantee.describe()}",
        f"- method: {METHOD}",
        *_shortfall_lines(ev),
        "",
        "## Results",
        "",
        "| model | split | n | accuracy | macro-F1 | AUROC | ECE (T=1) | ECE (calibrated) | kept locally | "
        "accuracy of kept | not a label | label-restricted accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows: list[tuple[str, str, SplitReport]] = [("adapter", s, r) for s, r in ev.adapter.items()]
    rows += [("base model", s, r) for s, r in ev.base.items()]
    if ev.majority is not None:
        rows.append((f"majority ('{ev.majority_label}')", TEST, ev.majority))
    for model, split, r in rows:
        lines.append(
            f"| {model} | {split} | {r.n} | {_f(r.accuracy)} | {_f(r.macro_f1)} | {_f(r.auroc)} | {_f(r.ece)} | "
            f"{_f(r.ece_calibrated)} | {_pct(r.kept)} | {_f(r.kept_accuracy)} | {_pct(r.not_a_label)} | "
            f"{_f(r.label_accuracy)} |"
        )
    test = ev.adapter[TEST]
    lines += ["", "## Confusion on test (rows: true label; columns: answer)", ""]
    lines.append("| | " + " | ".join(ev.labels) + " | not a label |")
    lines.append("|---" * (len(ev.labels) + 2) + "|")
    for label, row in zip(ev.labels, test.confusion, strict=True):
        lines.append(f"| {label} | " + " | ".join(str(x) for x in row) + " |")
    if ev.plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in ev.plots.items()]
    verdict = heldout_verdict(ev)
    if verdict is not None:
        lines += ["", "## Against the majority share on held-out data", "", verdict.line() + "."]
    return lines


def results_table(summaries: Sequence[TaskSummary]) -> str:
    lines = [
        "| task | base acc (restricted to labels) | adapter acc | base AUROC | adapter AUROC | ECE before -> after | "
        "threshold (val rows kept, bound) | kept on later period (accuracy, bound) | "
        "kept on held-out (accuracy, bound) | held-out acc (AUROC) | held-out majority share | "
        "train time (stopped by) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        ev = s.evaluation
        test = ev.adapter[TEST]
        base = ev.base.get(TEST)
        heldout = ev.adapter.get("heldout")
        lines.append(
            f"| {ev.task} | {f'{_f(base.accuracy)} ({_f(base.label_accuracy)})' if base else 'n/a'} | "
            f"{_f(test.accuracy)} | "
            f"{_f(base.auroc) if base else 'n/a'} | {_f(test.auroc)} | {_f(test.ece)} -> {_f(test.ece_calibrated)} | "
            f"{_threshold(ev.calibration.guarantee)} | {_kept(test)} | {_kept(heldout) if heldout else 'n/a'} | "
            f"{f'{_f(heldout.accuracy)} ({_f(heldout.auroc)})' if heldout else 'n/a'} | {_majority(ev)} | "
            f"{s.train.seconds / 60:.1f} min ({s.train.steps} steps, {s.train.stopped_by}) |"
        )
    notes = [s.collapse_line() for s in summaries if s.collapse]
    notes += [
        f"{v.line()}: a task joins the default run only once it beats it."
        for v in map(heldout_verdict, (s.evaluation for s in summaries))
        if v is not None and not v.beats_majority
    ]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines) + "\n"


def _majority(evaluation: Evaluation) -> str:
    verdict = heldout_verdict(evaluation)
    if verdict is None:
        return "n/a"
    return f"{verdict.majority_share:.3f} ({'beaten' if verdict.beats_majority else 'NOT beaten'})"


def _curve_lines(train: TrainResult) -> list[str]:
    curve = train.extra.get("validation_curve") or []
    if not curve:
        return []
    points = ", ".join(f"{int(step)}: {loss:.4f}" for step, loss in curve)
    return [f"- validation loss ({train.extra.get('watched_rows', 0)} held-back rows) at step {points}"]


def _threshold(guarantee: Guarantee) -> str:
    if not guarantee.supported:
        return f"none (escalates all; {guarantee.rows} val rows)"
    return f"{guarantee.threshold:.3f} ({guarantee.kept}/{guarantee.rows}, {guarantee.bound:.3f})"


def _kept(report: SplitReport) -> str:
    if not report.kept_rows:
        return f"0% of {report.n}"
    return f"{_pct(report.kept)} of {report.n} ({_f(report.kept_accuracy)}, {_f(report.kept_bound)})"


def _shortfall_lines(ev: Evaluation) -> list[str]:
    """Why the served target is above the one asked for, and what the guarantee costs in coverage."""
    lines = []
    if ev.shortfall > 0:
        lines.append(
            f"- off distribution (later period, held-out), the kept answers fell {ev.shortfall:.3f} short of "
            f"{ev.requested_target:g} at the first threshold: chosen again for {ev.calibration.target_accuracy:g}"
        )
    if not math.isnan(ev.val_point_kept):
        lines.append(
            f"- the old point estimate (lowest threshold whose validation kept accuracy reaches the target) would "
            f"keep {_pct(ev.val_point_kept)} of validation; the guarantee keeps {_pct(ev.calibration.val_kept)}"
        )
    return lines


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
