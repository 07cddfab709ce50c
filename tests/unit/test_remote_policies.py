"""Retry planning, the requests-per-minute window, latency EWMA and the token estimate."""

from __future__ import annotations

import random

import pytest

from gateway.core.contracts import BackendCall, Message, Role
from gateway.remote.estimate import CharEstimator
from gateway.remote.latency import LatencyTracker
from gateway.remote.providers.errors import retry_after_s
from gateway.remote.retry import RetryPolicy
from gateway.state.ratelimit.memory import RateLimiter
from tests.fakes.clock import FakeClock

POLICY = RetryPolicy(base_delay_s=0.25, max_delay_s=8.0, max_retry_after_s=30.0)


def plan(**overrides: object) -> float | None:
    args: dict[str, object] = {
        "retries_left": 2,
        "retryable": True,
        "retry_after_s": None,
        "remaining_s": None,
        "rng": random.Random(1),
    }
    args.update(overrides)
    return POLICY.plan(0, **args)  # type: ignore[arg-type]


def test_backoff_is_jittered_and_capped() -> None:
    rng = random.Random(7)
    delays = [POLICY.backoff(i, rng) for i in range(12)]
    assert all(0 <= d <= min(8.0, 0.25 * 2**i) for i, d in enumerate(delays))
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_retry_after_is_honoured_never_shortened() -> None:
    for seed in range(50):
        delay = plan(retry_after_s=3.0, rng=random.Random(seed))
        assert delay is not None and 3.0 <= delay <= 3.25


def test_no_retry_when_not_retryable_out_of_retries_or_out_of_time() -> None:
    assert plan(retryable=False) is None
    assert plan(retries_left=0) is None
    assert plan(retry_after_s=5.0, remaining_s=4.0) is None
    assert plan(retry_after_s=60.0) is None  # longer than max_retry_after_s: fall back instead


def test_retry_after_header_forms() -> None:
    assert retry_after_s({"Retry-After": "7"}) == 7.0
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"Retry-After": "Wed, 25 Nov 2026 00:00:10 GMT"}, now=1795564800.0) == pytest.approx(10.0)
    assert retry_after_s({"Retry-After": "soon"}) is None
    assert retry_after_s({}) is None


def test_rate_limiter_slides_over_one_minute() -> None:
    clock = FakeClock()
    limiter = RateLimiter(3, lambda: clock.mono)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert limiter.free_in_s() == pytest.approx(60.0)
    clock.advance(59.9)
    assert not limiter.try_acquire()
    clock.advance(0.1)
    assert limiter.try_acquire()


def test_rate_limiter_zero_means_unlimited() -> None:
    limiter = RateLimiter(0, lambda: 0.0)
    assert all(limiter.try_acquire() for _ in range(1000))


def test_latency_ewma() -> None:
    tracker = LatencyTracker(alpha=0.5)
    assert tracker.get("openai") is None
    tracker.observe("openai", 100.0)
    tracker.observe("openai", 200.0)
    assert tracker.get("openai") == 150.0


def test_estimate_covers_prompt_framing_and_max_tokens() -> None:
    call = BackendCall("r", (Message(Role.SYSTEM, "x" * 30), Message(Role.USER, "y" * 31)), max_tokens=50)
    assert CharEstimator(3.0)(call) == 21 + 4 * 2 + 3 + 50
