"""The collapse guard: an adapter whose test accuracy is the majority share of the test split, or
that gives one answer to every test example, is reported and not published; a good one is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune.data.datasets import TaskDataset
from finetune.evaluate.evaluation import Calibration, Evaluation, SplitReport, collapse
from finetune.examples import TEST, VAL, PromptTemplate
from finetune.options import RunOptions
from finetune.publish.report import TaskSummary, results_table
from finetune.settings import TrainResult, TrainSettings
from finetune.task_run import Base, _publish
from gateway.core.guarantee import choose_threshold

LABELS = ("up", "down", "flat")


def report(confusion: list[list[int]]) -> SplitReport:
    """A split report from its confusion matrix (rows: true label; columns: answer, then 'not a label')."""
    n = sum(map(sum, confusion))
    right = sum(confusion[i][i] for i in range(len(confusion)))
    return SplitReport(
        n=n,
        accuracy=right / n,
        macro_f1=0.5,
        auroc=0.6,
        ece=0.1,
        ece_calibrated=0.05,
        kept=0.2,
        kept_accuracy=0.9,
        not_a_label=sum(row[-1] for row in confusion) / n,
        label_accuracy=right / n,
        aurc=0.3,
        confusion=tuple(tuple(row) for row in confusion),
    )


def evaluation(test: list[list[int]]) -> Evaluation:
    calibration = Calibration(1.2, choose_threshold([0.9] * 60 + [0.5] * 240, [True] * 60 + [False] * 240, 0.95))
    return Evaluation("trend", LABELS, calibration, {VAL: report(test), TEST: report(test)}, majority_label="flat")


# test split: 40 flat, 35 up, 25 down -> majority share 0.40
ONE_ANSWER = [[0, 0, 35, 0], [0, 0, 25, 0], [0, 0, 40, 0]]  # 'flat' for everything: accuracy 0.40
NEAR_PRIOR = [[5, 0, 30, 0], [0, 4, 21, 0], [0, 9, 31, 0]]  # accuracy 0.400 with two answers in use
JUST_ABOVE = [[6, 0, 29, 0], [0, 4, 21, 0], [0, 9, 31, 0]]  # accuracy 0.41: more than the tolerance above
LEARNED = [[30, 2, 3, 0], [1, 20, 4, 0], [3, 3, 34, 0]]  # accuracy 0.84
ONE_WRONG_ANSWER = [[0, 0, 0, 35], [0, 0, 0, 25], [0, 0, 0, 40]]  # never a label


def test_one_answer_for_every_example_is_a_collapse() -> None:
    why = collapse(evaluation(ONE_ANSWER))
    assert "answers 'flat' for all 100 test examples" in why and "0.400" in why
    assert "something not a label" in collapse(evaluation(ONE_WRONG_ANSWER))


def test_accuracy_at_the_majority_share_is_a_collapse_within_the_tolerance() -> None:
    why = collapse(evaluation(NEAR_PRIOR))
    assert why.startswith("test accuracy 0.400 is within 0.005") and "(flat) is 0.400" in why
    assert collapse(evaluation(JUST_ABOVE)) == ""
    assert collapse(evaluation(JUST_ABOVE), tolerance=0.02) != ""
    assert collapse(evaluation(LEARNED)) == ""


def summary(test: list[list[int]], published: bool) -> TaskSummary:
    ev = evaluation(test)
    result = TrainResult(10, 40, 5.0, (1.0, 0.5), "steps")
    return TaskSummary("trend", "v1", ev, result, 9.0, 2.0, collapse(ev), published, learning_rate=3e-3)


def test_the_run_summary_names_the_task_its_accuracy_the_majority_share_and_what_to_try() -> None:
    table = results_table([summary(LEARNED, True), summary(ONE_ANSWER, False)])
    notes = [line for line in table.splitlines() if line.startswith("trend: ")]
    assert len(notes) == 1
    (note,) = notes
    assert "NOT published" in note and "0.400" in note and "majority share" in note
    assert "--lr 0.001" in note and "3e-3" not in note and "0.003" in note and "FINETUNE_BUDGET" in note
    assert "trend:" not in results_table([summary(LEARNED, True)])


# -- _publish with a stand-in model: what lands in the adapter directory ---------------------


class FakeAdapter:
    def save_pretrained(self, folder: Path) -> None:
        config = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj"], "use_dora": False}
        (folder / "adapter_config.json").write_text(json.dumps(config))
        (folder / "adapter_model.safetensors").write_bytes(b"weights")


def publish_once(tmp_path: Path, test: list[list[int]], **options: Any) -> Any:
    dataset = TaskDataset("trend", LABELS, PromptTemplate("Trend?"), (), {"prompt": {"system": "Trend?"}})
    base = Base(tmp_path / "base", "0" * 64, None, None)
    run_options = RunOptions(artifacts=tmp_path, cache_dir=tmp_path / "cache", **options)
    result = TrainResult(10, 40, 5.0, (1.0, 0.5), "steps")
    return _publish(
        "trend",
        dataset,
        base,
        FakeAdapter(),
        TrainSettings(learning_rate=3e-3),
        result,
        lambda staging: evaluation(test),
        run_options,
        tmp_path / "runs" / "r1",
        (0.0, 0.0, 0.0),
    )


def published_versions(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "adapters" / "trend"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_a_collapsed_adapter_is_not_published(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    outcome = publish_once(tmp_path, ONE_ANSWER)
    assert outcome.adapter_dir is None and not outcome.summary.published
    assert published_versions(tmp_path) == []  # nothing, not even a staging dot-folder
    report = outcome.report_path.read_text()
    assert "NOT published" in report and "answers 'flat'" in report
    assert any("NOT published" in r.getMessage() for r in caplog.records)


def test_a_good_adapter_is_published(tmp_path: Path) -> None:
    outcome = publish_once(tmp_path, LEARNED)
    assert outcome.summary.published and outcome.summary.collapse == ""
    assert published_versions(tmp_path) == [outcome.adapter_dir]
    card = json.loads((outcome.adapter_dir / "card.json").read_text())
    assert card["metrics"]["accuracy"] == 0.84


def test_publish_collapsed_publishes_and_still_says_so(tmp_path: Path) -> None:
    outcome = publish_once(tmp_path, NEAR_PRIOR, publish_collapsed=True)
    assert published_versions(tmp_path) == [outcome.adapter_dir]
    assert "published anyway" in outcome.summary.collapse_line()
    assert "published anyway" in outcome.report_path.read_text()
