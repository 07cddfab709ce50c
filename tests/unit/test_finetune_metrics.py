"""Metrics, calibration, thresholds and budgets on small fixtures with answers worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finetune.budget import parse_duration
from finetune.evaluate import metrics
from finetune.evaluate.calibrate import fit_temperature, scaled
from finetune.evaluate.scoring import Scored
from finetune.train.lora import TrainSettings, learning_rate, plateaued
from gateway.core.confidence import label_probabilities
from gateway.core.contracts import TokenLogprob

GOLD = np.array([0, 1, 2, 1])
PRED = np.array([0, 1, 1, -1])  # -1: the answer was not a label


def test_accuracy_counts_a_non_label_answer_as_wrong() -> None:
    assert metrics.accuracy(GOLD, PRED) == 0.5


def test_confusion_has_a_column_for_answers_that_are_not_labels() -> None:
    assert metrics.confusion(GOLD, PRED, 3).tolist() == [[1, 0, 0, 0], [0, 1, 0, 1], [0, 1, 0, 0]]


def test_macro_f1_by_hand() -> None:
    # label 0: F1 1; label 1: tp 1, fp 1, fn 1 -> 0.5; label 2: never right -> 0
    assert metrics.macro_f1(GOLD, PRED, 3) == pytest.approx(0.5)


def test_auroc_counts_ordered_pairs_and_half_ties() -> None:
    score = np.array([0.9, 0.8, 0.7, 0.6])
    positive = np.array([True, False, True, False])
    assert metrics.auroc(score, positive) == pytest.approx(0.75)
    assert metrics.auroc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert metrics.auroc(np.array([0.1, 0.9]), np.array([False, True])) == 1.0
    assert math.isnan(metrics.auroc(np.array([0.1, 0.9]), np.array([True, True])))


def test_ece_by_hand() -> None:
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([True, True, True, False])
    # bin 0.9-1.0: accuracy 1 vs 0.95; bin 0.5-0.6: accuracy 0.5 vs 0.55; each half the examples
    assert metrics.ece(conf, correct) == pytest.approx(0.05)
    curve = metrics.reliability(conf, correct)
    assert curve.counts[9] == 2 and curve.counts[5] == 2 and sum(curve.counts) == 4
    assert metrics.ece(np.array([1.0, 0.0]), np.array([True, False])) == 0.0


def test_risk_coverage_keeps_ties_together() -> None:
    conf = np.array([0.9, 0.8, 0.8, 0.3])
    correct = np.array([True, False, True, False])
    curve = metrics.risk_coverage(conf, correct)
    assert curve.coverage == (0.25, 0.75, 1.0)
    assert curve.risk == pytest.approx((0.0, 1 / 3, 0.5))
    assert curve.thresholds == (0.9, 0.8, 0.3)


def test_threshold_keeps_the_most_answers_that_reach_the_target() -> None:
    conf = np.array([0.9, 0.8, 0.8, 0.3])
    correct = np.array([True, False, True, False])
    loose = metrics.coverage_at_target(conf, correct, target=0.66, min_kept=1)
    assert (loose.threshold, loose.coverage) == (0.8, 0.75)
    strict = metrics.coverage_at_target(conf, correct, target=0.95, min_kept=1)
    assert (strict.threshold, strict.coverage, strict.accuracy) == (0.9, 0.25, 1.0)
    none = metrics.coverage_at_target(conf, correct, target=0.95, min_kept=2)
    assert none.threshold == 1.0 and none.coverage == 0.0  # nothing qualifies: everything escalates
    kept = metrics.selective(conf, correct, 0.8)
    assert kept.coverage == 0.75 and kept.accuracy == pytest.approx(2 / 3)


def test_temperature_scaling_matches_the_gateway_scorer() -> None:
    first = TokenLogprob("up", math.log(0.6), {"down": math.log(0.3), "flat": math.log(0.1)})
    labels = ("up", "down", "flat")
    probs = np.array([[label_probabilities(first, labels)[x] for x in labels]])
    for t in (0.5, 1.0, 2.5):
        gateway = label_probabilities(first, labels, temperature=t)
        assert scaled(probs, t)[0] == pytest.approx([gateway[x] for x in labels])


def test_fitted_temperature_undoes_known_overconfidence() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, size=(4000, 3))
    true = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    gold = np.array([rng.choice(3, p=p) for p in true])
    over = np.exp(3 * logits) / np.exp(3 * logits).sum(axis=1, keepdims=True)  # the model is 3x too sharp
    assert fit_temperature(over, gold) == pytest.approx(3.0, rel=0.15)
    assert fit_temperature(true, gold) == pytest.approx(1.0, rel=0.15)


def test_scored_confidence_is_the_gateway_score_of_the_answer() -> None:
    labels = ("up", "down")
    tokens = (
        TokenLogprob("up", math.log(0.6), {"down": math.log(0.2)}),
        TokenLogprob("The", math.log(0.9), {"up": math.log(0.05), "down": math.log(0.05)}),
    )
    s = Scored(labels, np.array([0, 1]), np.array([0, -1]), tokens, ("up", "The"))
    assert s.confidence().tolist() == pytest.approx([0.75, 0.0])  # 0.6 / (0.6 + 0.2); not a label -> 0
    assert s.correct.tolist() == [True, False]
    assert s.label_probs()[1].tolist() == pytest.approx([0.5, 0.5])


def test_durations() -> None:
    assert parse_duration("20m") == 1200
    assert parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90
    for bad in ("", "soon", "0m", "5x"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_plateau_is_patience_checks_without_a_real_improvement() -> None:
    falling = [(40, 1.0), (80, 0.8), (120, 0.7), (160, 0.65), (200, 0.62)]
    assert not plateaued(falling, 3, 0.01)
    flat = [(40, 1.0), (80, 0.7), (120, 0.71), (160, 0.699), (200, 0.705)]  # 0.699 is not 1% under 0.7
    assert plateaued(flat, 3, 0.01)
    assert not plateaued(flat[:3], 3, 0.01)  # not enough checks yet
    assert not plateaued([*flat[:4], (200, 0.69)], 3, 0.01)  # 0.69 is
    assert not plateaued(flat, 0, 0.01)  # patience 0: never


def test_learning_rate_warms_up_then_decays_by_time_or_steps() -> None:
    s = TrainSettings(learning_rate=1e-3, warmup_steps=10, max_steps=1000, time_budget_s=100, min_lr_ratio=0.1)
    assert learning_rate(s, 0, 0) == pytest.approx(1e-4)
    assert learning_rate(s, 10, 0) == pytest.approx(1e-3, rel=1e-3)
    assert learning_rate(s, 20, 50) == pytest.approx(0.55e-3)  # half the time gone: half-way down the cosine
    assert learning_rate(s, 20, 100) == pytest.approx(1e-4)
    assert learning_rate(TrainSettings(learning_rate=1e-3, max_steps=100, warmup_steps=0), 100, 0) == pytest.approx(
        1e-4
    )
