"""The vLLM poller across a restart: refused, then accepting without answering (starting), then healthy."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from local_models.vllm_backend import VllmBackend, VllmSettings
from tests.gateway_process import free_port
from tests.waiting import wait_until_async

METRICS = 'vllm:num_requests_running{model_name="m"} 0\nvllm:num_requests_waiting{model_name="m"} 0\n'


async def test_a_server_that_was_down_stays_down_while_it_accepts_without_answering() -> None:
    port = free_port()
    backend = VllmBackend(VllmSettings(base_url=f"http://127.0.0.1:{port}", model="m", metrics_poll_s=0.1))
    answering = asyncio.Event()
    silent_probes: list[float] = []  # when each /health that got no answer arrived

    async def health(request: web.Request) -> web.Response:
        if not answering.is_set():
            silent_probes.append(time.monotonic())
            await answering.wait()
        return web.Response(text="")

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=METRICS)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    try:
        backend.load()  # starts the poller; nothing listens yet
        await wait_until_async(
            lambda: backend.snapshot is not None and not backend.snapshot.healthy, timeout_s=10, what="refused"
        )
        assert backend.load().down

        await runner.setup()  # now it accepts and says nothing, as vLLM does while its engine starts
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await wait_until_async(lambda: len(silent_probes) >= 2, timeout_s=10, what="two unanswered probes")
        snapshot = backend.snapshot
        assert snapshot is not None and not snapshot.healthy
        assert snapshot.at >= silent_probes[0]  # refreshed after the silent probe: still down, not stale
        assert backend.load().down.startswith("vllm is not healthy")

        answering.set()
        await wait_until_async(
            lambda: backend.snapshot is not None and backend.snapshot.healthy, timeout_s=10, what="healthy"
        )
        assert not backend.load().down
    finally:
        answering.set()
        await backend.aclose()
        await runner.cleanup()


async def test_a_reading_counts_as_fresh_for_at_least_three_polls() -> None:
    slow_poll = VllmBackend(VllmSettings(base_url="http://127.0.0.1:1", model="m", metrics_poll_s=0.5))
    quick_poll = VllmBackend(VllmSettings(base_url="http://127.0.0.1:1", model="m", metrics_poll_s=0.01))
    try:
        assert slow_poll.stale_after_s == pytest.approx(1.5)
        assert quick_poll.stale_after_s == pytest.approx(VllmSettings("", "").metrics_stale_s)
    finally:
        await slow_poll.aclose()
        await quick_poll.aclose()
