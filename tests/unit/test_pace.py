"""The local model's measured pace and the load estimate built from it (pure: samples are handed in)."""

from __future__ import annotations

import math

import pytest

from local_models.pace import GUESS_MARGIN, MARGIN, LabelSteps, Pace, RunningBatch, estimate_load

M = MARGIN  # every figure read back is padded by it
G = MARGIN * GUESS_MARGIN  # and a guessed one by both


def learned(max_batch: int = 8, **steps: float) -> Pace:
    """A Pace that saw one batch per size given as s<size>=<step seconds>, each with a 0.1 s prefill."""
    pace = Pace(max_batch)
    for name, step in steps.items():
        size = int(name[1:])
        pace.batch_started()
        pace.observe(size, 0.1)
        pace.observe(size, step)
    return pace


def test_the_first_pass_of_a_batch_is_its_prefill_and_later_ones_are_steps() -> None:
    pace = Pace(8)
    assert not pace.measured
    pace.batch_started()
    pace.observe(4, 0.3)
    pace.observe(4, 0.02)
    pace.observe(4, 0.04)
    assert pace.measured
    assert pace.prefill_s(4) == pytest.approx(0.3 * M)
    assert pace.step_s(4) == pytest.approx((0.7 * 0.02 + 0.3 * 0.04) * M)  # a moving average: it follows the machine
    assert pace.batch_s(4, 10) == pytest.approx(pace.prefill_s(4) + 10 * pace.step_s(4))


def test_unmeasured_sizes_are_guessed_from_measured_ones_with_a_margin() -> None:
    pace = learned(s2=0.02, s6=0.04)
    assert pace.step_s(2) == pytest.approx(0.02 * M)  # measured
    assert pace.step_s(4) == pytest.approx(0.03 * G)  # between two measured sizes
    assert pace.step_s(1) == pytest.approx(0.02 * G)  # below the smallest: the smallest's figure
    assert pace.step_s(8) == pytest.approx(0.05 * G)  # along the last two measured sizes
    alone = learned(s1=0.02)
    assert alone.step_s(3) == pytest.approx(0.06 * G)  # one size seen: in proportion


def test_before_any_timed_batch_only_the_next_batch_is_admissible() -> None:
    pace = Pace(4)
    idle = estimate_load(
        pace, in_flight=2, max_in_flight=64, running=None, queued=[(24, None), (24, None)], max_wait_s=0.005
    )
    assert not idle.measured and idle.est_wait_s == 0
    behind = estimate_load(
        pace, in_flight=3, max_in_flight=64, running=RunningBatch(1, 24, 0.0), queued=[(24, None)], max_wait_s=0.005
    )
    assert math.isinf(behind.est_wait_s)


def test_a_new_request_waits_for_the_running_batch_and_every_full_batch_ahead() -> None:
    pace = learned(max_batch=4, s1=0.01, s3=0.03, s4=0.04)
    running = RunningBatch(size=4, steps=10, started=100.0)
    ahead = [(24, None), (1, None), (24, None), (24, None)]  # one full batch ahead
    load = estimate_load(
        pace,
        in_flight=10,
        max_in_flight=64,
        running=running,
        queued=[*ahead, (1, None), (1, None)],  # then two jobs in the batch it would join
        max_wait_s=0.005,
        now=100.2,
    )
    left = (0.1 + 10 * 0.04) * M - 0.2
    full_batch = (0.1 + 24 * 0.04) * M
    assert load.est_wait_s == pytest.approx(left + full_batch + 0.005)
    # it would be the third job of that batch: the prefill and step of a batch of three
    assert (load.est_prefill_s, load.est_step_s) == (pytest.approx(0.1 * M), pytest.approx(0.03 * M))
    assert load.est_finish_s(24) == pytest.approx(load.est_wait_s + (0.1 + 24 * 0.03) * M)
    assert load.would_delay == 0


def test_joining_a_batch_that_would_make_its_admitted_jobs_late_is_flagged() -> None:
    pace = learned(max_batch=2, s1=0.01, s2=0.05)
    now = 10.0
    # alone, the queued job would finish by 10.35; with a second row in its batch, after 11.1
    tight = estimate_load(
        pace, in_flight=1, max_in_flight=64, running=None, queued=[(20, now + 0.5)], max_wait_s=0.005, now=now
    )
    assert tight.would_delay == 1
    roomy = estimate_load(
        pace, in_flight=1, max_in_flight=64, running=None, queued=[(20, now + 5.0)], max_wait_s=0.005, now=now
    )
    assert roomy.would_delay == 0 and roomy.est_step_s == pytest.approx(0.05 * M)


def test_an_idle_model_starts_a_request_within_the_batching_window_at_its_own_size() -> None:
    pace = learned(max_batch=8, s1=0.01, s8=0.05)
    load = estimate_load(pace, in_flight=1, max_in_flight=64, running=None, queued=[], max_wait_s=0.005)
    assert load.est_wait_s == pytest.approx(0.005)
    assert load.est_step_s == pytest.approx(0.01 * M)


def test_a_batch_running_longer_than_estimated_still_counts_one_step() -> None:
    pace = learned(max_batch=2, s2=0.02)
    late = RunningBatch(size=2, steps=3, started=0.0)
    load = estimate_load(pace, in_flight=2, max_in_flight=64, running=late, queued=[], max_wait_s=0.0, now=50.0)
    assert load.est_wait_s == pytest.approx(0.02 * M)


def test_warm_up_figures_are_replaced_by_the_first_real_batch_of_that_size() -> None:
    pace = Pace(4)
    with pace.warming():
        pace.batch_started()
        pace.observe(4, 9.0)
        pace.observe(4, 9.0)
    pace.batch_started()
    pace.observe(4, 0.2)
    pace.observe(4, 0.03)
    assert (pace.prefill_s(4), pace.step_s(4)) == (pytest.approx(0.2 * M), pytest.approx(0.03 * M))


def test_label_steps_are_the_most_of_recent_label_batches_and_max_tokens_before_any() -> None:
    steps = LabelSteps(window=3)
    assert steps.most == 0 and steps.steps(24) == 24  # nothing seen: as long as free text
    steps.observe(1)
    assert steps.most == 1 and steps.steps(24) == 1  # the label checked in one pass
    steps.observe(24)  # the model talked past the label
    steps.observe(1)
    assert steps.steps(24) == 24 and steps.steps(8) == 8  # never more than the request allows
    steps.observe(1)
    steps.observe(0)
    assert steps.most == 1  # the long one left the window; a batch counts at least one step


def test_the_load_carries_the_label_steps_it_was_given() -> None:
    pace = learned(s1=0.03)
    load = estimate_load(pace, in_flight=0, max_in_flight=8, running=None, queued=[], max_wait_s=0.0, label_steps=5)
    assert load.label_steps == 5
    assert load.est_finish_s(24, label=True) == pytest.approx(load.est_wait_s + (0.1 + 5 * 0.03) * M)
