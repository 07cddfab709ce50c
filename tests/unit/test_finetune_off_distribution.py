"""The served threshold reflects how the kept answers do off the validation distribution: on a later
period (test) and on held-out symbols. Scored splits are built with known confidences and outcomes."""

from __future__ import annotations

import math

import numpy as np

from finetune.evaluate.evaluation import evaluate, off_distribution_shortfall, split_report
from finetune.evaluate.scoring import Scored
from finetune.examples import HELDOUT, TEST, VAL
from gateway.core.contracts import TokenLogprob

LABELS = ("up", "down")


def scored(n: int, seed: int, slip: float = 0.0) -> Scored:
    """`n` answers, confidence spread over 0.5-1.0, each right with probability confidence - slip."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    gold = rng.integers(0, 2, n)
    right = rng.uniform(0.0, 1.0, n) < confidence - slip
    pred = np.where(right, gold, 1 - gold)
    tokens = tuple(
        TokenLogprob(LABELS[p], math.log(c), {LABELS[1 - p]: math.log(1.0 - c)})
        for p, c in zip(pred.tolist(), confidence.tolist(), strict=True)
    )
    return Scored(LABELS, gold.astype(np.int64), pred.astype(np.int64), tokens, tuple(LABELS[p] for p in pred))


def test_a_later_period_that_falls_short_raises_the_served_target_by_its_gap() -> None:
    splits = {VAL: scored(2000, 1), TEST: scored(1000, 2, slip=0.08), HELDOUT: scored(600, 3)}
    first = evaluate("t", {VAL: splits[VAL], TEST: splits[TEST]}, {}, ["up", "down"], target_accuracy=0.9)
    # the same rows evaluated without the later period's shortfall: the first threshold
    plain = evaluate("t", {VAL: splits[VAL], TEST: scored(1000, 2)}, {}, ["up", "down"], target_accuracy=0.9)

    assert plain.shortfall == 0.0
    assert plain.calibration.target_accuracy == 0.9
    assert first.shortfall > 0.02
    assert first.requested_target == 0.9
    assert math.isclose(first.calibration.target_accuracy, 0.9 + first.shortfall, abs_tol=1e-4)
    assert first.calibration.threshold > plain.calibration.threshold
    assert first.calibration.val_kept < plain.calibration.val_kept  # coverage paid for the gap
    assert first.calibration.guarantee.bound >= first.calibration.target_accuracy  # still guaranteed on val


def test_the_shortfall_is_the_worse_split_and_ignores_splits_with_too_few_kept() -> None:
    splits = {VAL: scored(2000, 1), TEST: scored(1000, 2), HELDOUT: scored(600, 3, slip=0.1)}
    ev = evaluate("t", splits, {}, ["up"], target_accuracy=0.9, min_kept=20)
    reports = {s: split_report(splits[s], ev.calibration) for s in splits}
    assert off_distribution_shortfall(reports, 0.9, min_kept=10**6) == 0.0
    heldout = evaluate("t", {VAL: splits[VAL], TEST: splits[TEST]}, {}, ["up"], target_accuracy=0.9)
    assert ev.shortfall > heldout.shortfall  # the held-out split's gap decided


def test_the_card_carries_kept_accuracy_and_its_bound_off_distribution() -> None:
    splits = {VAL: scored(2000, 1), TEST: scored(1000, 2), HELDOUT: scored(600, 3)}
    ev = evaluate("t", splits, {}, ["up", "down"], target_accuracy=0.9)
    figures = ev.card_metrics()
    for name, split in (("later_period", TEST), ("heldout", HELDOUT)):
        report = ev.adapter[split]
        assert report.kept_rows == round(report.kept * report.n)
        assert figures[f"{name}_kept_rows"] == report.kept_rows
        assert figures[f"{name}_kept_accuracy"] == round(report.kept_correct / report.kept_rows, 4)
        assert 0.0 < figures[f"{name}_kept_bound"] < figures[f"{name}_kept_accuracy"]
    assert figures["requested_target"] == 0.9
    # the old point estimate keeps more of validation than the guarantee does
    assert figures["val_point_estimate_kept_share"] > figures["val_kept_share"]
