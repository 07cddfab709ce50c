"""The echo backend's delay: its heavy tail (the hedging benchmark's slow local tier) and its finish estimate."""

from __future__ import annotations

import random
import statistics

import pytest

from gateway.config import load_config
from local_models.echo import EchoBackend


def test_a_share_of_answers_gets_an_exponential_extra_delay() -> None:
    echo = EchoBackend(delay_ms=2.0, tail_share=0.1, tail_ms=50.0, rng=random.Random(7))
    delays = [echo.next_delay_s() for _ in range(20_000)]
    slow = [d - 0.002 for d in delays if d > 0.002]
    assert min(delays) == pytest.approx(0.002)
    assert len(slow) / len(delays) == pytest.approx(0.1, abs=0.01)
    assert statistics.mean(slow) == pytest.approx(0.050, rel=0.1)


def test_no_tail_by_default_and_the_config_bounds_the_share() -> None:
    assert {EchoBackend(delay_ms=5.0).next_delay_s() for _ in range(100)} == {0.005}
    config = load_config(overrides={"local.echo.tail_share": 0.05, "local.echo.tail_ms": 200})
    assert (config.local.echo.tail_share, config.local.echo.tail_ms) == (0.05, 200.0)
    with pytest.raises(ValueError, match=r"local\.echo\.tail_share"):
        load_config(overrides={"local.echo.tail_share": 1.5})


def test_the_delay_is_the_finish_estimate_unless_report_delay_is_off() -> None:
    assert EchoBackend(delay_ms=100.0).load().est_finish_s(8, label=False) >= 0.1
    blind = EchoBackend(delay_ms=100.0, report_delay=False)
    assert blind.load().est_finish_s(8, label=False) < 0.1  # admitted, and then late: for deadline tests
    assert blind.next_delay_s() == pytest.approx(0.1)  # the work itself still takes the delay
