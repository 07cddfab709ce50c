"""Evaluation of scored splits: accuracy, macro-F1, confusion, AUROC of confidence vs
correctness, ECE before and after temperature scaling, risk-coverage, and the escalation
threshold chosen on validation with a guarantee on the kept answers' accuracy
(gateway.core.guarantee), then measured off the validation distribution: on test (a later
period) and on heldout (symbols or subjects never trained on).

When the kept answers' accuracy off distribution falls short of the target, the served threshold
reflects it: the threshold is chosen again on validation, for the target plus the largest
shortfall measured (`Evaluation.shortfall`). The off-distribution rows only size that margin;
the threshold itself, and what it guarantees, still come from validation alone.
Baselines: the base model without adapter (calibrated the same way) and the majority class.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetune.evaluate import metrics
from finetune.evaluate.calibrate import fit_temperature
from finetune.evaluate.label_scores import LabelScores, by_group
from finetune.examples import HELDOUT, TEST, VAL
from gateway.core.binomial import lower_bound
from gateway.core.guarantee import DEFAULT_LEVEL, Guarantee, choose_threshold

OFF_DISTRIBUTION = (TEST, HELDOUT)  # a later period; symbols or subjects never trained on
GROUP_SEPARATOR = ":"  # "heldout:unseen": the held-out rows of one group, reported beside the whole split
MAX_RAISED_TARGET = 0.995  # a shortfall raises the served target at most to this


@dataclass(frozen=True, slots=True)
class SplitReport:
    n: int
    accuracy: float
    macro_f1: float
    auroc: float  # confidence as a predictor of a correct answer
    ece: float  # temperature 1
    ece_calibrated: float  # with the fitted temperature
    kept: float  # share answered locally at the threshold
    kept_accuracy: float  # accuracy of those
    not_a_label: float  # share of answers that were not one of the labels
    label_accuracy: float  # accuracy of the most probable label (as if decoding were restricted to labels)
    aurc: float  # area under the risk-coverage curve
    confusion: tuple[tuple[int, ...], ...]  # rows true label, columns answer (+ "not a label")
    kept_rows: int = 0  # answers kept at the threshold
    kept_correct: int = 0  # of those, right
    kept_bound: float = 0.0  # one-sided Clopper-Pearson lower bound on their accuracy (at the guarantee's level)


@dataclass(frozen=True, slots=True)
class Calibration:
    temperature: float
    guarantee: Guarantee  # the threshold chosen on validation, and what it promises

    @property
    def threshold(self) -> float:
        return self.guarantee.threshold

    @property
    def target_accuracy(self) -> float:
        return self.guarantee.target

    @property
    def val_kept(self) -> float:
        return self.guarantee.coverage

    @property
    def val_kept_accuracy(self) -> float:
        return self.guarantee.accuracy


@dataclass(frozen=True)
class Evaluation:
    task: str
    labels: tuple[str, ...]
    calibration: Calibration
    adapter: Mapping[str, SplitReport]  # val, test, heldout
    base_calibration: Calibration | None = None
    base: Mapping[str, SplitReport] = field(default_factory=dict)
    majority: SplitReport | None = None
    majority_label: str = ""
    plots: Mapping[str, str] = field(default_factory=dict)
    requested_target: float = 0.0  # the target asked for (0: the calibration's own)
    shortfall: float = 0.0  # the largest off-distribution gap below it at the first threshold (0: none)
    val_point_kept: float = float("nan")  # validation share kept by the old point-estimate threshold

    def card_metrics(self) -> dict[str, float]:
        """Flat figures for the adapter card and ListModels (test split unless named)."""
        test = self.adapter[TEST]
        out = {
            "accuracy": test.accuracy,
            "macro_f1": test.macro_f1,
            "auroc": test.auroc,
            "ece": test.ece,
            "ece_calibrated": test.ece_calibrated,
            "kept_share": test.kept,
            "kept_accuracy": test.kept_accuracy,
            "val_kept_share": self.calibration.val_kept,
            "test_examples": float(test.n),
        }
        if HELDOUT in self.adapter:
            out["heldout_accuracy"] = self.adapter[HELDOUT].accuracy
            out["heldout_auroc"] = self.adapter[HELDOUT].auroc
        for split, name in ((TEST, "later_period"), (HELDOUT, "heldout")):
            if split in self.adapter:
                report = self.adapter[split]
                out[f"{name}_kept_share"] = report.kept
                out[f"{name}_kept_rows"] = float(report.kept_rows)
                if report.kept_rows:
                    out[f"{name}_kept_accuracy"] = report.kept_accuracy
                    out[f"{name}_kept_bound"] = report.kept_bound
        for split, report in self.adapter.items():
            if split.startswith(HELDOUT + GROUP_SEPARATOR):  # heldout:unseen -> heldout_unseen_auroc, ...
                name = split.replace(GROUP_SEPARATOR, "_")
                out[f"{name}_examples"] = float(report.n)
                out[f"{name}_accuracy"] = report.accuracy
                out[f"{name}_auroc"] = report.auroc
                out[f"{name}_kept_share"] = report.kept
                if report.kept_rows:
                    out[f"{name}_kept_accuracy"] = report.kept_accuracy
                    out[f"{name}_kept_bound"] = report.kept_bound
        out["requested_target"] = self.requested_target or self.calibration.target_accuracy
        out["off_distribution_shortfall"] = self.shortfall
        out["val_point_estimate_kept_share"] = self.val_point_kept
        if TEST in self.base:
            out["base_accuracy"] = self.base[TEST].accuracy
            out["base_auroc"] = self.base[TEST].auroc
        if self.majority is not None:
            out["majority_accuracy"] = self.majority.accuracy
        return {k: round(float(v), 4) for k, v in out.items() if not math.isnan(v)}

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


COLLAPSE_TOLERANCE = 0.005


def collapse(evaluation: Evaluation, tolerance: float = COLLAPSE_TOLERANCE) -> str:
    """Why the adapter looks like it learned the label prior instead of the task ("" when it does
    not): it gives one answer to every test example, or its test accuracy is within `tolerance`
    of the share of the test split's most frequent label."""
    test = evaluation.adapter[TEST]
    if not test.n:
        return ""
    answers = [sum(column) for column in zip(*test.confusion, strict=True)]
    given = [i for i, count in enumerate(answers) if count]
    rows = [sum(row) for row in test.confusion]
    top = max(range(len(rows)), key=rows.__getitem__)
    share = rows[top] / test.n
    majority = f"the majority share of the test split ({evaluation.labels[top]}) is {share:.3f}"
    if len(given) == 1:
        index = given[0]
        answer = f"'{evaluation.labels[index]}'" if index < len(evaluation.labels) else "something not a label"
        return f"it answers {answer} for all {test.n} test examples (test accuracy {test.accuracy:.3f}; {majority})"
    if abs(test.accuracy - share) <= tolerance:
        return f"test accuracy {test.accuracy:.3f} is within {tolerance:g} of {majority}"
    return ""


def calibrate(val: LabelScores, target_accuracy: float, min_kept: int, level: float = DEFAULT_LEVEL) -> Calibration:
    temperature = fit_temperature(val.label_probs(), val.gold)
    confidence = val.confidence(temperature).tolist()
    guarantee = choose_threshold(confidence, val.correct.tolist(), target_accuracy, level, min_kept)
    return Calibration(temperature, guarantee)


def split_report(scored: LabelScores, calibration: Calibration) -> SplitReport:
    raw = scored.confidence()
    calibrated = scored.confidence(calibration.temperature)
    correct = scored.correct
    kept = metrics.selective(calibrated, correct, calibration.threshold)
    kept_mask = calibrated >= calibration.threshold
    kept_rows, kept_correct = int(kept_mask.sum()), int(correct[kept_mask].sum())
    k = len(scored.labels)
    return SplitReport(
        n=len(scored),
        accuracy=metrics.accuracy(scored.gold, scored.pred),
        macro_f1=metrics.macro_f1(scored.gold, scored.pred, k),
        auroc=metrics.auroc(calibrated, correct),
        ece=metrics.ece(raw, correct),
        ece_calibrated=metrics.ece(calibrated, correct),
        kept=kept.coverage,
        kept_accuracy=kept.accuracy,
        not_a_label=float(np.mean(scored.pred < 0)) if len(scored) else 0.0,
        label_accuracy=metrics.accuracy(scored.gold, scored.label_probs().argmax(axis=1))
        if len(scored)
        else float("nan"),
        aurc=metrics.risk_coverage(calibrated, correct).aurc(),
        confusion=tuple(tuple(int(x) for x in row) for row in metrics.confusion(scored.gold, scored.pred, k)),
        kept_rows=kept_rows,
        kept_correct=kept_correct,
        kept_bound=lower_bound(kept_correct, kept_rows, calibration.guarantee.level) if kept_rows else 0.0,
    )


def group_splits(
    split: str, scores: LabelScores, groups: Sequence[str], wanted: Sequence[str]
) -> dict[str, LabelScores]:
    """`split`'s rows of each wanted group as splits of their own ("heldout:unseen"), reported beside the whole."""
    return {f"{split}{GROUP_SEPARATOR}{group}": part for group, part in by_group(scores, groups, wanted).items()}


def off_distribution_shortfall(reports: Mapping[str, SplitReport], target: float, min_kept: int) -> float:
    """How far below `target` the kept answers' accuracy falls on the later period or the held-out
    symbols, whichever is worse (0 when neither falls short, or neither keeps `min_kept` answers)."""
    gaps = [
        target - reports[split].kept_correct / reports[split].kept_rows
        for split in OFF_DISTRIBUTION
        if split in reports and reports[split].kept_rows >= min_kept
    ]
    return max([0.0, *gaps])


def majority_report(train_labels: Sequence[str], test: LabelScores) -> tuple[str, SplitReport]:
    """Always answer the most frequent training label, with its training share as confidence."""
    counts = Counter(train_labels)
    label, count = counts.most_common(1)[0]
    share = count / len(train_labels)
    index = test.labels.index(label)
    pred = np.full(len(test), index, dtype=np.int64)
    correct = pred == test.gold
    conf = np.full(len(test), share)
    k = len(test.labels)
    acc = metrics.accuracy(test.gold, pred)
    return label, SplitReport(
        n=len(test),
        accuracy=acc,
        macro_f1=metrics.macro_f1(test.gold, pred, k),
        auroc=0.5,
        ece=metrics.ece(conf, correct),
        ece_calibrated=metrics.ece(conf, correct),
        kept=1.0 if acc >= 0.95 else 0.0,  # one confidence for all: keep all or none
        kept_accuracy=acc if acc >= 0.95 else float("nan"),
        not_a_label=0.0,
        label_accuracy=acc,
        aurc=1 - acc,
        confusion=tuple(tuple(int(x) for x in row) for row in metrics.confusion(test.gold, pred, k)),
    )


def evaluate(
    task: str,
    adapter: Mapping[str, LabelScores],
    base: Mapping[str, LabelScores],
    train_labels: Sequence[str],
    *,
    target_accuracy: float = 0.95,
    min_kept: int = 20,
    level: float = DEFAULT_LEVEL,
    plot_dir: Path | None = None,
) -> Evaluation:
    """Everything from scored splits; `adapter` needs val and test, `base` is optional."""
    calibration = calibrate(adapter[VAL], target_accuracy, min_kept, level)
    reports = {split: split_report(scored, calibration) for split, scored in adapter.items()}
    shortfall = off_distribution_shortfall(reports, target_accuracy, min_kept)
    if shortfall > 0 and calibration.guarantee.supported:
        raised = min(MAX_RAISED_TARGET, target_accuracy + shortfall)
        calibration = calibrate(adapter[VAL], raised, min_kept, level)
        reports = {split: split_report(scored, calibration) for split, scored in adapter.items()}
    val_conf = adapter[VAL].confidence(calibration.temperature)
    point = metrics.coverage_at_target(val_conf, adapter[VAL].correct, target_accuracy, min_kept)
    base_calibration = calibrate(base[VAL], target_accuracy, min_kept, level) if VAL in base else None
    base_reports = {split: split_report(s, base_calibration) for split, s in base.items()} if base_calibration else {}
    majority_label, majority = majority_report(train_labels, adapter[TEST])
    plots = _plots(task, adapter, base, calibration, base_calibration, plot_dir) if plot_dir else {}
    return Evaluation(
        task,
        adapter[TEST].labels,
        calibration,
        reports,
        base_calibration,
        base_reports,
        majority,
        majority_label,
        plots,
        requested_target=target_accuracy,
        shortfall=round(shortfall, 4),
        val_point_kept=point.coverage,
    )


def _plots(
    task: str,
    adapter: Mapping[str, LabelScores],
    base: Mapping[str, LabelScores],
    calibration: Calibration,
    base_calibration: Calibration | None,
    folder: Path,
) -> dict[str, str]:
    from finetune.evaluate.plots import reliability_png, risk_coverage_png

    folder.mkdir(parents=True, exist_ok=True)
    test = adapter[TEST]
    curves = {
        "adapter, T=1": metrics.reliability(test.confidence(), test.correct),
        f"adapter, T={calibration.temperature:g}": metrics.reliability(
            test.confidence(calibration.temperature), test.correct
        ),
    }
    if TEST in base and base_calibration is not None:
        curves["base model, T=1"] = metrics.reliability(base[TEST].confidence(), base[TEST].correct)
    reliability = reliability_png(curves, folder / "reliability.png", f"{task}: reliability on test")
    rc_curves = {"adapter": metrics.risk_coverage(test.confidence(calibration.temperature), test.correct)}
    if TEST in base and base_calibration is not None:
        rc_curves["base model"] = metrics.risk_coverage(
            base[TEST].confidence(base_calibration.temperature), base[TEST].correct
        )
    chosen = metrics.selective(test.confidence(calibration.temperature), test.correct, calibration.threshold)
    point = (chosen.coverage, 0.0 if chosen.accuracy != chosen.accuracy else 1 - chosen.accuracy)
    rc = risk_coverage_png(
        rc_curves, folder / "risk_coverage.png", f"{task}: risk-coverage on test", calibration.target_accuracy, point
    )
    return {"reliability": reliability.name, "risk_coverage": rc.name}
