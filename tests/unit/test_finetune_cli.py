"""`python -m finetune`: bad input ends with exit status 2 and a message naming what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.__main__ import main, options_from, parser


def test_an_unreadable_budget_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--budget", "two hours"], env={})
    assert exit_info.value.code == 2
    assert "'two hours'" in capsys.readouterr().err


def test_jobs_under_accelerate_launch_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--jobs", "2"], env={"WORLD_SIZE": "2"})
    assert exit_info.value.code == 2
    assert "--jobs 2" in capsys.readouterr().err


def test_an_unknown_task_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "--tasks", "candles", "--artifacts", str(tmp_path)], env={"HOME": str(tmp_path)})
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown task 'candles'" in err and "trend" in err


def test_a_user_file_without_labels_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "desk.jsonl"
    data.write_text('{"prompt": "EURUSD breaks 1.10", "label": "up"}\n{"prompt": "no label here"}\n')
    code = main(["data", "--data", str(data), "--artifacts", str(tmp_path)], env={"HOME": str(tmp_path)})
    assert code == 2
    assert "desk.jsonl:2: needs a non-empty 'label'" in capsys.readouterr().err


def test_volatility_and_drawdown_train_at_their_own_learning_rate_unless_lr_is_given() -> None:
    args = parser().parse_args([])
    _, options, _, _ = options_from(args, {})
    assert options.settings_for("trend").learning_rate == 3e-3
    assert options.settings_for("volatility").learning_rate == options.settings_for("drawdown").learning_rate == 1e-3
    _, chosen, _, _ = options_from(parser().parse_args(["--lr", "5e-4"]), {})
    assert {chosen.settings_for(t).learning_rate for t in ("trend", "volatility")} == {5e-4}


def test_the_default_run_holds_the_tasks_that_cleared_the_bar_and_others_run_when_named() -> None:
    tasks, options, _, _ = options_from(parser().parse_args([]), {})
    assert tasks == ["trend", "volatility", "drawdown"]  # pattern and mmlu: --tasks pattern,mmlu
    assert options_from(parser().parse_args(["--tasks", "pattern,mmlu"]), {})[0] == ["pattern", "mmlu"]
    assert options.settings_for("pattern").learning_rate == 3e-3  # measured against 1e-3
    assert options.settings_for("sentiment").learning_rate == 1e-3


def test_a_task_stops_once_its_validation_loss_plateaus_unless_told_not_to() -> None:
    _, options, _, _ = options_from(parser().parse_args([]), {})
    assert (options.settings.plateau_every, options.settings.plateau_patience, options.watched_rows) == (40, 3, 48)
    _, never, _, _ = options_from(parser().parse_args(["--plateau-every", "0", "--watched-rows", "0"]), {})
    assert never.settings.plateau_every == 0 and never.watched_rows == 0


def test_collapsed_adapters_are_published_only_when_asked_or_in_smoke_runs() -> None:
    assert options_from(parser().parse_args([]), {})[1].publish_collapsed is False
    assert options_from(parser().parse_args(["--publish-collapsed"]), {})[1].publish_collapsed is True
    assert options_from(parser().parse_args(["--smoke"]), {})[1].publish_collapsed is True


def test_the_threshold_guarantee_is_stated_at_a_confidence_level() -> None:
    _, options, _, _ = options_from(parser().parse_args([]), {})
    assert (options.target_accuracy, options.confidence_level) == (0.95, 0.95)
    _, chosen, _, _ = options_from(parser().parse_args(["--confidence-level", "0.9"]), {})
    assert chosen.confidence_level == 0.9
