"""Dynamic micro-batching: requests that arrive close together are decoded together.

A batch is cut when it reaches `max_batch` jobs or when `max_wait_s` has passed
since its first job arrived. Jobs are grouped by key (the adapter), so one batch
never mixes adapters; jobs of other keys wait for the next batch, in arrival
order. Batches run one at a time on a single worker thread, off the event loop.

Work nobody waits for is dropped before it reaches the model: a job withdrawn by
its caller leaves the queue at once, and a job that is cancelled or whose
deadline has passed is failed instead of being batched. The queue (each job's
steps) and the batch running now are readable for the load estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar

from gateway.core.errors import DeadlineExceeded
from local_models.pace import RunningBatch


class BatchJob(Protocol):
    cancelled: bool

    def fail(self, error: BaseException) -> None: ...


J = TypeVar("J", bound=BatchJob)


class MicroBatcher(Generic[J]):
    def __init__(
        self,
        run_batch: Callable[[list[J]], None],
        *,
        max_batch: int,
        max_wait_s: float,
        key: Callable[[J], Hashable] = lambda job: None,
        on_batch: Callable[[int, float], None] = lambda size, seconds: None,
        steps: Callable[[J], int] = lambda job: 1,
        deadline: Callable[[J], float | None] = lambda job: None,
        on_start: Callable[[], None] = lambda: None,
    ) -> None:
        """`steps(job)`: decode steps a job may take (for the estimate); `deadline(job)`: its time.monotonic()
        deadline or None; `on_start` is called before each batch is handed to the worker thread."""
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._key = key
        self._on_batch = on_batch
        self._steps = steps
        self._deadline = deadline
        self._on_start = on_start
        self._running_batch: RunningBatch | None = None
        self._waiting: deque[J] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-batch")
        self._task: asyncio.Task[None] | None = None
        self._running = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    def submit(self, job: J) -> None:
        self._waiting.append(job)
        self._wakeup.set()

    def withdraw(self, job: J) -> None:
        """Take a job its caller no longer waits for out of the queue (nothing when it already left it)."""
        with contextlib.suppress(ValueError):
            self._waiting.remove(job)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def waiting(self) -> list[tuple[int, float | None]]:
        """(steps, deadline) of each waiting job, in queue order."""
        return [(self._steps(job), self._deadline(job)) for job in self._waiting]

    @property
    def running_batch(self) -> RunningBatch | None:
        return self._running_batch

    @property
    def running(self) -> int:
        return self._running

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while self._waiting:
            self._waiting.popleft().fail(RuntimeError("the local backend is shutting down"))
        self._executor.shutdown(wait=True)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
            first_seen = loop.time()
            while len(self._waiting) < self._max_batch and loop.time() - first_seen < self._max_wait_s:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._max_wait_s - (loop.time() - first_seen))
            batch = self._take_batch()
            if not batch:
                continue
            self._running = len(batch)
            self._running_batch = RunningBatch(len(batch), max(map(self._steps, batch)), time.monotonic())
            self._on_start()
            started = time.perf_counter()
            try:
                await loop.run_in_executor(self._executor, self._run_batch, batch)
            except Exception as exc:  # noqa: BLE001 - a broken batch fails its jobs, never the loop
                for job in batch:
                    job.fail(exc)
            finally:
                self._running = 0
                self._running_batch = None
            self._on_batch(len(batch), time.perf_counter() - started)

    def _take_batch(self) -> list[J]:
        """Up to max_batch live jobs sharing the first live job's key; the rest keep their order.

        Cancelled jobs and jobs past their deadline are failed here, never batched."""
        batch: list[J] = []
        kept: deque[J] = deque()
        key: Hashable = None
        now = time.monotonic()
        while self._waiting:
            job = self._waiting.popleft()
            if job.cancelled:
                job.fail(asyncio.CancelledError())
                continue
            deadline = self._deadline(job)
            if deadline is not None and now >= deadline:
                job.fail(DeadlineExceeded("the request's deadline passed while it waited for the local model"))
                continue
            if not batch:
                key = self._key(job)
            if len(batch) < self._max_batch and self._key(job) == key:
                batch.append(job)
            else:
                kept.append(job)
        self._waiting = kept
        return batch
