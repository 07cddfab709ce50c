"""The default run, scaled down to fit the test suite: the default tasks that learn within a few
minutes, trained side by side in two processes as `make finetune` trains them (FINETUNE_JOBS=2),
for a fixed number of steps (seeded, so the same run every time), each held to the bar every
default task must clear: its adapter beats its majority share on held-out data
(finetune.evaluate.admission). A task in the default set that does not learn fails here.

Scaled down: 100 steps at a 3e-3 peak (the full run trains volatility at 1e-3 for some 300 steps),
48 validation and test rows, 8 base-model rows. drawdown is left out: it needs some 300 steps
before it learns anything (measured: at 200 steps it reached 0.62 on the held-out symbol, whose
majority share is 0.60), about 8 minutes on these cores; the full run's summary holds it to the
same bar (`python -m finetune`, "held-out majority share").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from finetune.data.datasets import BuildOptions
from finetune.evaluate.admission import heldout_verdict
from finetune.options import DEFAULT_TASKS, RunOptions
from finetune.pipeline import run
from finetune.settings import TrainSettings

CACHE = Path.home() / ".cache" / "trading-gateway"
SCALED_DOWN = ("trend", "volatility")
# default tasks too slow to learn within the test suite's minutes; each needs its reason in the docstring
FULL_RUN_ONLY = ("drawdown",)


def test_every_default_task_is_in_the_scaled_down_run_or_named_as_too_slow_for_it() -> None:
    # a task added to DEFAULT_TASKS lands in one of the two on purpose, never in neither
    assert sorted((*SCALED_DOWN, *FULL_RUN_ONLY)) == sorted(DEFAULT_TASKS)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Any:
    options = RunOptions(
        artifacts=tmp_path_factory.mktemp("default-run"),
        cache_dir=CACHE,
        settings=TrainSettings(learning_rate=3e-3, max_steps=100, warmup_steps=10, seed=0),
        learning_rates={},  # one peak rate for the short run
        build=BuildOptions(max_examples={"val": 48, "test": 48, "heldout": 150}, seed=0),
        base_max_examples=8,
        progress=False,
    )
    return run(SCALED_DOWN, options, budget_s=None, jobs=2)


def test_every_task_of_the_scaled_down_default_run_beats_its_majority_share_on_heldout(outcomes: Any) -> None:
    assert [o.summary.evaluation.task for o in outcomes] == list(SCALED_DOWN)
    for outcome in outcomes:
        verdict = heldout_verdict(outcome.summary.evaluation)
        assert verdict is not None and verdict.rows >= 100
        assert verdict.beats_majority, verdict.line()
        assert outcome.summary.train.steps == 100
