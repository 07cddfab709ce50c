"""The llama.cpp load estimate: free slots, a full engine's queue, joining slows the others, capacity."""

from __future__ import annotations

import math

import pytest

from gateway.routing.capacity import check_capacity
from local_models.llamacpp_pace import MARGIN, Admitted, SlotPace, estimate_load


def pace(slots: int = 2, prefill: float = 0.1, steps: dict[int, float] | None = None) -> SlotPace:
    p = SlotPace(slots)
    p.observe_prefill(prefill)
    for size, seconds in (steps or {1: 0.01, 2: 0.015}).items():
        p.observe_step(size, seconds)
    return p


def test_before_any_timing_only_a_free_slot_admits() -> None:
    p = SlotPace(2)
    assert estimate_load(p, [], max_in_flight=8).est_wait_s == 0
    full = estimate_load(p, [Admitted(10, None), Admitted(10, None)], max_in_flight=8)
    assert not full.measured and full.est_wait_s == math.inf
    assert not check_capacity(full, remaining_s=5.0).ok


def test_a_free_slot_means_no_wait_and_the_step_of_one_more_sequence() -> None:
    load = estimate_load(pace(), [Admitted(10, None, decoding=True)], max_in_flight=8, now=0.0)
    assert load.est_wait_s == 0
    assert load.est_step_s == pytest.approx(MARGIN * 0.015)  # it would decode beside the one running
    assert load.est_prefill_s == pytest.approx(MARGIN * 0.1)
    assert load.est_finish_s(20) == pytest.approx(MARGIN * (0.1 + 20 * 0.015))


def test_a_full_engine_waits_for_the_first_slot_to_free() -> None:
    running = [Admitted(100, None, decoding=True, done_steps=90), Admitted(100, None, decoding=True, done_steps=50)]
    load = estimate_load(pace(), running, max_in_flight=8, now=0.0)
    assert load.est_wait_s == pytest.approx(10 * MARGIN * 0.015)  # the first finishes in 10 steps


def test_queued_requests_take_the_slots_before_a_new_one() -> None:
    running = [Admitted(100, None, decoding=True, done_steps=90), Admitted(100, None, decoding=True, done_steps=80)]
    queued = [Admitted(5, None), Admitted(5, None)]
    load = estimate_load(pace(), running + queued, max_in_flight=8, now=0.0)
    step, prefill = MARGIN * 0.015, MARGIN * 0.1
    # slot A frees at 10 steps and takes queued 1 (prefill + 5), slot B at 20 steps takes queued 2; the new one
    # gets the first of those to free again
    assert load.est_wait_s == pytest.approx(min(10 * step + prefill + 5 * step, 20 * step + prefill + 5 * step))
    assert load.in_flight == 4


def test_joining_counts_the_requests_it_would_make_late() -> None:
    p = pace(slots=4, steps={1: 0.01, 2: 0.02})
    tight = Admitted(100, deadline=100 * MARGIN * 0.012, decoding=True)  # on time alone (0.01), late at two (0.02)
    loose = Admitted(100, deadline=10.0, decoding=True)
    late = estimate_load(p, [tight], max_in_flight=8, now=0.0)
    assert late.would_delay == 1
    assert not check_capacity(late, remaining_s=60).ok
    assert estimate_load(p, [loose], max_in_flight=8, now=0.0).would_delay == 0


def test_capacity_refuses_what_would_finish_after_the_deadline() -> None:
    running = [Admitted(400, None, decoding=True), Admitted(400, None, decoding=True)]
    load = estimate_load(pace(), running, max_in_flight=8, now=0.0)
    assert not check_capacity(load, remaining_s=1.0, max_tokens=8).ok  # it would wait ~400 steps for a slot
    idle = estimate_load(pace(), [], max_in_flight=8, now=0.0)
    assert check_capacity(idle, remaining_s=1.0, max_tokens=8).ok


def test_an_unmeasured_size_is_guessed_from_the_nearest_measured_ones() -> None:
    p = pace(slots=8, steps={1: 0.01, 4: 0.04})
    assert p.step_s(2) > p.step_s(1)
    assert p.step_s(2) < p.step_s(4)
    assert p.step_s(8) > p.step_s(4)


def test_warm_up_figures_give_way_to_the_first_real_ones() -> None:
    p = SlotPace(2)
    p.warming(True)
    p.observe_step(1, 1.0)
    p.observe_prefill(1.0)
    p.warming(False)
    p.observe_step(1, 0.01)
    p.observe_prefill(0.1)
    assert p.step_s(1) == pytest.approx(MARGIN * 0.01)
    assert p.prefill_s == pytest.approx(MARGIN * 0.1)


def test_a_down_engine_says_so() -> None:
    load = estimate_load(pace(), [], max_in_flight=8, down="the engine is restarting")
    assert not check_capacity(load, remaining_s=None).ok
