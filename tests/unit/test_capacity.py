"""The capacity decision: the local tier's finish estimate against the time the request has left."""

from __future__ import annotations

import pytest

from gateway.core.contracts import LocalLoad
from gateway.routing.capacity import check_capacity


def busy(wait_s: float = 0.5, prefill_s: float = 0.2, step_s: float = 0.05, label_steps: int = 1) -> LocalLoad:
    return LocalLoad(10, 64, wait_s, est_prefill_s=prefill_s, est_step_s=step_s, label_steps=label_steps)


def test_finish_estimate_is_queue_wait_plus_prefill_plus_a_step_per_token() -> None:
    load = busy()
    assert load.est_finish_s(24) == pytest.approx(0.5 + 0.2 + 24 * 0.05)
    assert load.est_finish_s(24, label=True) == pytest.approx(0.5 + 0.2 + 0.05)  # one pass checks the label
    assert load.est_finish_s(0) == pytest.approx(0.5 + 0.2 + 0.05)


def test_a_label_answer_takes_the_steps_recent_label_answers_took_and_max_tokens_before_any() -> None:
    assert busy(label_steps=0).est_finish_s(24, label=True) == pytest.approx(0.5 + 0.2 + 24 * 0.05)
    assert busy(label_steps=6).est_finish_s(24, label=True) == pytest.approx(0.5 + 0.2 + 6 * 0.05)
    assert busy(label_steps=40).est_finish_s(24, label=True) == pytest.approx(0.5 + 0.2 + 24 * 0.05)  # capped
    assert not check_capacity(busy(label_steps=24), remaining_s=1.0, max_tokens=24, label=True).ok


def test_a_request_that_would_finish_after_its_deadline_is_refused_with_the_estimate() -> None:
    decision = check_capacity(busy(), remaining_s=1.5, max_tokens=24)
    assert not decision.ok
    assert decision.est_finish_s == pytest.approx(1.9)
    assert "~1900 ms" in decision.reason and "1500 ms left" in decision.reason and "24 tokens" in decision.reason


def test_the_same_queue_admits_a_shorter_request_or_a_label_answer() -> None:
    assert check_capacity(busy(), remaining_s=1.5, max_tokens=8).ok
    label = check_capacity(busy(), remaining_s=1.0, max_tokens=24, label=True)
    assert label.ok and label.est_finish_s == pytest.approx(0.75)


def test_full_backend_and_passed_deadline_are_refused_without_an_estimate() -> None:
    full = check_capacity(LocalLoad(64, 64, 0.0), remaining_s=None)
    assert not full.ok and "64/64" in full.reason
    assert not check_capacity(LocalLoad(0, 64, 0.0), remaining_s=-0.1).ok


def test_no_deadline_admits_whatever_the_queue() -> None:
    assert check_capacity(busy(wait_s=99.0), remaining_s=None, max_tokens=500).ok


def test_before_the_first_timed_batch_only_the_next_batch_is_admitted() -> None:
    cold_free = LocalLoad(3, 64, 0.0, measured=False)
    cold_behind = LocalLoad(9, 64, float("inf"), measured=False)
    assert check_capacity(cold_free, remaining_s=2.0, max_tokens=24).ok
    refused = check_capacity(cold_behind, remaining_s=2.0, max_tokens=24)
    assert not refused.ok and "not timed yet" in refused.reason


def test_a_request_that_would_make_admitted_ones_late_is_refused() -> None:
    crowded = LocalLoad(3, 64, 0.0, est_prefill_s=0.1, est_step_s=0.01, would_delay=2)
    decision = check_capacity(crowded, remaining_s=30.0, max_tokens=1)
    assert not decision.ok and "push 2 admitted requests past their deadlines" in decision.reason
