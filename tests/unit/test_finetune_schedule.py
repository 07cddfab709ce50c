"""Sharing the run's budget: each task's part of the time left given the waiting tasks and the busy
workers, time handed on by a task that stops early, and the plateau that stops it."""

from __future__ import annotations

from contextlib import nullcontext

import pytest

from finetune.budget import task_budget
from finetune.options import DEFAULT_WEIGHTS
from finetune.schedule import Schedule

R = 1200.0  # seconds to the deadline


def test_one_worker_shares_the_time_left_by_weight() -> None:
    assert task_budget(0, R, [1.0, 0.5], [], 1) == pytest.approx(800)
    assert task_budget(0, 900, [1.0, 1.0, 1.0], [], 1) == pytest.approx(300)
    assert task_budget(300, R, [1.0], [], 1) == pytest.approx(900)  # the last task gets the rest


def test_three_tasks_on_two_workers_are_planned_as_one_alone_and_two_in_turn() -> None:
    # the first task is planned alone on its worker (the other two follow each other on the second)
    assert task_budget(0, R, [1.0, 1.0, 1.0], [], 2) == pytest.approx(R)
    # the second starts with the first booked to the end: it and the third share its worker
    assert task_budget(0, R, [1.0, 1.0], [R], 2) == pytest.approx(R / 2)
    assert task_budget(R / 2, R, [1.0], [R], 2) == pytest.approx(R / 2)
    # four tasks on two workers: a half each
    assert task_budget(0, R, [1.0, 1.0, 1.0, 1.0], [], 2) == pytest.approx(R / 2)


def test_the_default_run_plans_volatility_alone_and_trend_and_drawdown_a_half_each() -> None:
    weights = DEFAULT_WEIGHTS.get("volatility", 1.0)
    assert task_budget(0, R, [1.0, weights, 1.0], [], 2) == pytest.approx(R / 2)  # trend first
    assert task_budget(0, R, [weights, 1.0], [R / 2], 2) == pytest.approx(R)  # volatility beside it
    assert task_budget(R / 2, R, [1.0], [R], 2) == pytest.approx(R / 2)  # drawdown after trend


def test_time_a_task_leaves_goes_to_the_tasks_after_it() -> None:
    # the second task planned R/2 and stopped after R/4 (its validation loss stopped improving):
    # the third starts then, with the first still booked to the end, and gets the rest
    assert task_budget(R / 4, R, [1.0], [R], 2) == pytest.approx(3 * R / 4)
    # with work still waiting, the task starting now shares with it, not with the busy worker's
    assert task_budget(R / 4, R, [1.0, 1.0], [R], 2) == pytest.approx(3 * R / 8)


def test_a_heavier_task_waiting_gets_its_weight() -> None:
    assert task_budget(0, R, [0.5, 1.0], [R], 2) == pytest.approx(400)
    assert task_budget(0, R, [1.0, 0.5], [R], 2) == pytest.approx(800)


def test_no_time_left_means_no_budget() -> None:
    assert task_budget(R, R, [1.0], [], 2) == 0.0
    assert task_budget(R + 5, R, [1.0, 1.0], [R], 2) == 0.0


def test_the_schedule_books_each_start_and_frees_the_worker_at_the_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"now": 1000.0}
    monkeypatch.setattr("finetune.schedule.time.time", lambda: clock["now"])
    tasks = ("trend", "volatility", "drawdown")
    schedule = Schedule(tasks, dict.fromkeys(tasks, 1.0), 2, 1000.0 + R, {}, nullcontext())
    assert schedule.start("trend") == pytest.approx(R)
    assert schedule.start("volatility") == pytest.approx(R / 2)
    clock["now"] += 300  # volatility plateaus after 300 s; drawdown starts on its worker
    schedule.finish("volatility")
    assert schedule.ends["volatility"] == 1300.0
    assert schedule.start("drawdown") == pytest.approx(R - 300)
    assert schedule.ends["drawdown"] == pytest.approx(1000.0 + R)


def test_without_a_deadline_tasks_are_bounded_by_steps() -> None:
    schedule = Schedule(("trend",), {"trend": 1.0}, 1, None, {}, nullcontext())
    assert schedule.start("trend") is None
    schedule.finish("trend")
    assert schedule.ends == {}


def test_worker_processes_share_the_bookings() -> None:
    # what `--jobs 2` does: the ledger and its lock live in a manager; each worker books through them
    import time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    context = get_context("spawn")
    tasks = ("trend", "volatility", "drawdown")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        deadline = time.time() + R
        schedule = Schedule(
            tasks, {"trend": 1.0, "volatility": 2.0, "drawdown": 1.0}, 2, deadline, manager.dict(), manager.Lock()
        )
        trend = pool.submit(schedule.start, "trend").result()
        volatility = pool.submit(schedule.start, "volatility").result()
        pool.submit(schedule.finish, "volatility").result()  # stops early: drawdown gets the rest
        drawdown = pool.submit(schedule.start, "drawdown").result()
        assert trend is not None and volatility is not None and drawdown is not None
        assert trend == pytest.approx(R / 2, abs=60) and volatility == pytest.approx(R, abs=60)
        assert drawdown == pytest.approx(R, abs=60)
        assert set(schedule.ends.keys()) == set(tasks)


def test_the_watched_rows_are_spread_over_validation_and_never_fit_the_threshold() -> None:
    from finetune.examples import VAL, Example
    from finetune.task_run import hold_back

    val = [Example(str(i), "up", VAL) for i in range(300)]
    watched, rest = hold_back(val, 48)
    assert len(watched) == 48 and len(rest) == 252
    assert not {ex.input for ex in watched} & {ex.input for ex in rest}
    assert watched[0].input == "0" and watched[-1].input == "299"  # from the whole period, not a prefix
    assert hold_back(val[:239], 48) == ([], val[:239])  # small splits keep every row for the threshold
    assert hold_back(val, 0) == ([], val)
