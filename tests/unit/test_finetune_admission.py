"""The bar for the default run: an adapter beats the majority share of its held-out split, with
confidence (finetune.evaluate.admission); the run summary and the report say when it does not."""

from __future__ import annotations

from finetune.evaluate.admission import ADMISSION_LEVEL, heldout_verdict
from finetune.evaluate.evaluation import Calibration, Evaluation, SplitReport
from finetune.examples import HELDOUT, TEST, VAL
from finetune.publish.report import TaskSummary, results_table, task_report
from finetune.settings import TrainResult
from gateway.core.binomial import lower_bound
from gateway.core.guarantee import choose_threshold

LABELS = ("up", "down", "flat")


def report(confusion: list[list[int]]) -> SplitReport:
    n = sum(map(sum, confusion))
    right = sum(confusion[i][i] for i in range(len(confusion)))
    return SplitReport(n, right / n, 0.5, 0.6, 0.1, 0.05, 0.2, 0.9, 0.0, right / n, 0.3, tuple(map(tuple, confusion)))


def evaluation(heldout: list[list[int]] | None) -> Evaluation:
    calibration = Calibration(1.0, choose_threshold([0.9] * 60, [True] * 60, 0.95))
    learned = report([[30, 2, 3, 0], [1, 20, 4, 0], [3, 3, 34, 0]])
    splits = {VAL: learned, TEST: learned} | ({HELDOUT: report(heldout)} if heldout else {})
    return Evaluation("trend", LABELS, calibration, splits)


# held-out split: 50 flat, 30 up, 20 down -> majority share 0.50
CLEAR = [[25, 2, 3, 0], [1, 16, 3, 0], [4, 4, 42, 0]]  # 83 of 100
MARGINAL = [[15, 5, 10, 0], [5, 10, 5, 0], [10, 12, 28, 0]]  # 53 of 100: above 0.50, not with confidence
PRIOR = [[0, 0, 30, 0], [0, 0, 20, 0], [0, 0, 50, 0]]  # 'flat' for everything


def test_the_verdict_compares_a_lower_bound_on_heldout_accuracy_with_the_majority_share() -> None:
    clear = heldout_verdict(evaluation(CLEAR))
    assert clear is not None
    assert (clear.rows, clear.correct, clear.majority_label, clear.majority_share) == (100, 83, "flat", 0.5)
    assert clear.lower_bound == lower_bound(83, 100, ADMISSION_LEVEL) and clear.beats_majority
    marginal = heldout_verdict(evaluation(MARGINAL))
    assert marginal is not None and marginal.accuracy > 0.5 and not marginal.beats_majority
    prior = heldout_verdict(evaluation(PRIOR))
    assert prior is not None and not prior.beats_majority
    assert heldout_verdict(evaluation(None)) is None  # a task without a held-out split


def summary(heldout: list[list[int]]) -> TaskSummary:
    result = TrainResult(10, 40, 5.0, (1.0, 0.5), "plateau", extra={"validation_curve": [[40, 0.9], [80, 0.7]]})
    return TaskSummary("trend", "v1", evaluation(heldout), result, 9.0, 2.0)


def test_the_run_summary_says_which_tasks_fall_short_of_the_bar() -> None:
    table = results_table([summary(CLEAR), summary(MARGINAL)])
    rows = [line for line in table.splitlines() if line.startswith("| trend |")]
    assert "| 0.500 (beaten) |" in rows[0] and "| 0.500 (NOT beaten) |" in rows[1]
    assert "plateau" in rows[0]
    (note,) = [line for line in table.splitlines() if line.startswith("trend: held-out")]
    assert "0.530" in note and "does NOT beat its majority share 0.500" in note and "default run" in note


def test_the_report_gives_the_verdict_and_the_validation_curve() -> None:
    text = task_report(summary(CLEAR), {"prompt": {"system": "Trend?"}}, {})
    assert "beats its majority share 0.500 ('flat')" in text
    assert "validation loss" in text and "40: 0.9000, 80: 0.7000" in text
