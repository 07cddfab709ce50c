from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from local_models.batcher import MicroBatcher
from tests.waiting import wait_until_async


@dataclass(eq=False)
class Job:
    key: str
    cancelled: bool = False
    errors: list[BaseException] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)


async def test_jobs_arriving_together_share_a_batch_grouped_by_key() -> None:
    batches: list[list[str]] = []
    batcher: MicroBatcher[Job] = MicroBatcher(
        lambda jobs: batches.append([j.key for j in jobs]), max_batch=3, max_wait_s=0.05, key=lambda j: j.key
    )
    batcher.start()
    for key in ["a", "b", "a", "a", "a"]:
        batcher.submit(Job(key))
    await wait_until_async(lambda: sum(map(len, batches)) == 5, timeout_s=10, what="all five jobs to run")
    await batcher.aclose()
    assert batches == [["a", "a", "a"], ["b"], ["a"]]


async def test_cancelled_jobs_are_dropped_and_failures_reach_every_job() -> None:
    def explode(jobs: list[Job]) -> None:
        raise ValueError("model crashed")

    sizes: list[int] = []
    batcher: MicroBatcher[Job] = MicroBatcher(
        explode, max_batch=4, max_wait_s=0.01, on_batch=lambda n, s: sizes.append(n)
    )
    batcher.start()
    gone, live = Job("x", cancelled=True), Job("x")
    batcher.submit(gone)
    batcher.submit(live)
    await wait_until_async(lambda: live.errors, timeout_s=10, what="the live job to get the batch's failure")
    await batcher.aclose()
    assert isinstance(gone.errors[0], asyncio.CancelledError)
    assert isinstance(live.errors[0], ValueError)
    assert sizes == [1]
