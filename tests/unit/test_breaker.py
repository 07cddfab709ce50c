"""Circuit breaker: opens after N failures within the window, one half-open probe, closes on success."""

from __future__ import annotations

from gateway.breaker import BreakerSettings, BreakerState, CircuitBreaker
from tests.fakes.clock import FakeClock


def make(failures: int = 3, window_s: float = 10.0, cooldown_s: float = 30.0) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(BreakerSettings(failures, window_s, cooldown_s), lambda: clock.mono), clock


def state(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: each read is fresh


def test_opens_after_n_failures_within_the_window() -> None:
    breaker, _ = make()
    for _ in range(2):
        breaker.record_failure()
        assert breaker.allow() is not None
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.allow() is None
    assert "circuit open" in breaker.describe()


def test_failures_spread_beyond_the_window_do_not_open_it() -> None:
    breaker, clock = make(failures=3, window_s=10.0)
    for _ in range(5):
        breaker.record_failure()
        clock.advance(6.0)
    assert state(breaker) is BreakerState.CLOSED


def test_a_success_resets_the_count() -> None:
    breaker, _ = make(failures=2)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED


def test_half_open_lets_exactly_one_probe_through_and_success_closes() -> None:
    breaker, clock = make(failures=1, cooldown_s=30.0)
    breaker.record_failure()
    clock.advance(29.0)
    assert breaker.allow() is None
    clock.advance(1.0)
    assert breaker.state is BreakerState.HALF_OPEN
    probe = breaker.allow()
    assert probe is not None and probe.probe
    assert breaker.allow() is None  # the probe is out
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.allow() is not None


def test_failed_probe_opens_for_another_cooldown() -> None:
    breaker, clock = make(failures=1, cooldown_s=30.0)
    breaker.record_failure()
    clock.advance(30.0)
    assert breaker.allow() is not None
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.advance(29.0)
    assert breaker.allow() is None
    clock.advance(1.0)
    assert breaker.allow() is not None


def test_released_probe_can_be_taken_again() -> None:
    breaker, clock = make(failures=1)
    breaker.record_failure()
    clock.advance(30.0)
    probe = breaker.allow()
    assert probe is not None
    breaker.release(probe)
    assert breaker.allow() is not None


def test_block_for_refuses_until_the_provider_said() -> None:
    breaker, clock = make()
    breaker.block_for(60.0)
    assert not breaker.ready()
    assert breaker.allow() is None
    assert "Retry-After" in breaker.describe()
    clock.advance(60.0)
    assert breaker.ready()
    assert breaker.allow() is not None
