from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

from gateway.core.errors import DeadlineExceeded
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


@dataclass(eq=False)
class TimedJob:
    deadline: float | None = None
    steps: int = 1
    cancelled: bool = False
    errors: list[BaseException] = field(default_factory=list)

    def fail(self, error: BaseException) -> None:
        self.errors.append(error)


async def test_queued_work_past_its_deadline_or_cancelled_is_dropped_before_the_model() -> None:
    release = threading.Event()
    ran: list[list[TimedJob]] = []

    def run(jobs: list[TimedJob]) -> None:
        ran.append(jobs)
        release.wait(10)

    batcher: MicroBatcher[TimedJob] = MicroBatcher(
        run, max_batch=4, max_wait_s=0.0, deadline=lambda j: j.deadline, steps=lambda j: j.steps
    )
    batcher.start()
    blocker = TimedJob()
    batcher.submit(blocker)
    await wait_until_async(lambda: batcher.running_batch is not None, timeout_s=10, what="the first batch to run")
    expired = TimedJob(deadline=time.monotonic() - 1.0)  # its deadline passed while it waited
    gone = TimedJob(cancelled=True)  # its caller went away
    live = TimedJob(deadline=time.monotonic() + 60, steps=24)
    for job in (expired, gone, live):
        batcher.submit(job)
    assert [steps for steps, _ in batcher.waiting()] == [1, 1, 24]
    release.set()
    await wait_until_async(lambda: len(ran) == 2, timeout_s=10, what="the second batch to run")
    await batcher.aclose()
    assert ran[1] == [live]
    assert isinstance(expired.errors[0], DeadlineExceeded) and "deadline passed" in expired.errors[0].message
    assert isinstance(gone.errors[0], asyncio.CancelledError)
    assert not live.errors


async def test_a_withdrawn_job_leaves_the_queue_at_once_and_the_running_batch_is_visible() -> None:
    release = threading.Event()
    ran: list[list[TimedJob]] = []

    def run(jobs: list[TimedJob]) -> None:
        ran.append(jobs)
        release.wait(10)

    batcher: MicroBatcher[TimedJob] = MicroBatcher(run, max_batch=2, max_wait_s=0.0, steps=lambda j: j.steps)
    batcher.start()
    batcher.submit(TimedJob(steps=7))
    await wait_until_async(lambda: batcher.running_batch is not None, timeout_s=10, what="the first batch to run")
    running = batcher.running_batch
    assert running is not None and (running.size, running.steps) == (1, 7)
    withdrawn, kept = TimedJob(steps=3), TimedJob(steps=5)
    batcher.submit(withdrawn)
    batcher.submit(kept)
    batcher.withdraw(withdrawn)
    batcher.withdraw(withdrawn)  # a second time, or after it left the queue: nothing happens
    assert batcher.waiting() == [(5, None)]
    release.set()
    await wait_until_async(lambda: len(ran) == 2, timeout_s=10, what="the second batch to run")
    await batcher.aclose()
    assert ran[1] == [kept] and not withdrawn.errors
    assert batcher.running_batch is None
