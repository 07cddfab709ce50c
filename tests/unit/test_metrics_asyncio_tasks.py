"""gateway_asyncio_tasks: the tasks alive on the loop when /metrics is scraped (the soak watches it for leaks)."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import generate_latest

from gateway.observe.metrics import Metrics


def scraped(metrics: Metrics) -> float:
    text = generate_latest(metrics.registry).decode()
    match = re.search(r"^gateway_asyncio_tasks (\S+)$", text, re.MULTILINE)
    assert match, "gateway_asyncio_tasks not exported"
    return float(match.group(1))


async def test_the_gauge_counts_the_tasks_alive_now() -> None:
    metrics = Metrics()
    before = scraped(metrics)
    release = asyncio.Event()
    waiting = [asyncio.create_task(release.wait()) for _ in range(3)]
    assert scraped(metrics) == before + 3
    release.set()
    await asyncio.gather(*waiting)
    assert scraped(metrics) == before


def test_off_the_loop_it_is_not_a_number() -> None:
    assert scraped(Metrics()) != scraped(Metrics())  # NaN is unequal to itself
