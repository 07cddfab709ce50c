"""The client's retry rule: UNAVAILABLE only, bounded tries, backoff with jitter, never past the deadline."""

from __future__ import annotations

import random

import grpc
import pytest

from gateway.client import RetryPolicy

POLICY = RetryPolicy(max_attempts=5, initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0)


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c is not grpc.StatusCode.UNAVAILABLE])
def test_no_code_but_unavailable_is_retried(code: grpc.StatusCode) -> None:
    assert POLICY.next_wait_s(code, attempt=1, remaining_s=60.0, rng=random.Random(1)) is None


def test_unavailable_is_retried_until_the_attempts_run_out() -> None:
    rng = random.Random(1)
    waits = [POLICY.next_wait_s(grpc.StatusCode.UNAVAILABLE, n, 60.0, rng) for n in range(1, 7)]
    assert all(w is not None for w in waits[:4])
    assert waits[4:] == [None, None]  # after the 5th try: give up


def test_a_wait_that_would_reach_the_deadline_gives_up() -> None:
    rng = random.Random(2)
    for _ in range(200):
        wait = POLICY.next_wait_s(grpc.StatusCode.UNAVAILABLE, 4, remaining_s=0.3, rng=rng)
        assert wait is None or wait < 0.3
    assert POLICY.next_wait_s(grpc.StatusCode.UNAVAILABLE, 1, remaining_s=0.0, rng=rng) is None


def test_backoff_grows_exponentially_up_to_the_cap_with_full_jitter() -> None:
    rng = random.Random(3)
    for retry, cap in enumerate([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]):
        samples = [POLICY.backoff_s(retry, rng) for _ in range(400)]
        assert 0.0 <= min(samples) < cap * 0.1
        assert cap * 0.9 < max(samples) <= cap
        assert len(set(samples)) > 300  # jittered, not one fixed wait


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_backoff_s": 2.0, "max_backoff_s": 1.0}, "initial_backoff_s"),
        ({"multiplier": 0.5}, "multiplier"),
    ],
)
def test_a_bad_policy_names_its_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_resource_exhausted_reads_the_reset_time_from_the_trailer() -> None:
    from datetime import UTC, datetime

    from gateway.client.errors import ResourceExhausted

    spent = ResourceExhausted(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "quota", {"x-gateway-resets-at": "2026-12-01T00:00:00Z"}
    )
    assert spent.resets_at == datetime(2026, 12, 1, tzinfo=UTC)
    assert ResourceExhausted(grpc.StatusCode.RESOURCE_EXHAUSTED, "busy").resets_at is None
    assert ResourceExhausted(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", {"x-gateway-resets-at": "soon"}).resets_at is None
