"""The event loop's lag: each tick's delay past its due time, smoothed; the timer task ends with aclose."""

from __future__ import annotations

import asyncio

from gateway.observe.loop_lag import LoopLag


def test_the_lag_follows_the_ticks_delays() -> None:
    lag = LoopLag(alpha=0.5)
    lag.observe(0.2)
    assert lag.seconds() == 0.1
    lag.observe(-0.01)  # early is no lag
    assert lag.seconds() == 0.05


async def test_the_timer_runs_until_closed() -> None:
    lag = LoopLag(tick_s=0.001)
    before = len(asyncio.all_tasks())
    lag.start()
    assert len(asyncio.all_tasks()) == before + 1
    await lag.aclose()
    assert len(asyncio.all_tasks()) == before
