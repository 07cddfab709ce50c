"""Draining: in-flight calls are waited for, new ones are to be refused once it begins."""

from __future__ import annotations

import asyncio

from gateway.api.drain import Drain


async def test_finish_waits_for_calls_in_flight_and_marks_new_ones_for_refusal() -> None:
    drain = Drain()
    release = asyncio.Event()

    async def call() -> None:
        with drain.call():
            await release.wait()

    running = [asyncio.create_task(call()) for _ in range(3)]
    while drain.active < 3:
        await asyncio.sleep(0)
    finishing = asyncio.create_task(drain.finish(grace_s=30))
    await asyncio.sleep(0)
    assert drain.draining and not finishing.done()  # three calls still in flight
    release.set()
    assert await finishing is True
    await asyncio.gather(*running)
    assert drain.active == 0


async def test_finish_gives_up_after_the_grace() -> None:
    drain = Drain()
    with drain.call():
        assert await drain.finish(grace_s=0.01) is False
    assert drain.active == 0 and drain.draining


async def test_with_nothing_in_flight_finish_returns_at_once() -> None:
    drain = Drain()
    assert not drain.draining
    assert await drain.finish(grace_s=0) is True
