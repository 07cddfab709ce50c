"""Dynamic micro-batching: requests that arrive close together are decoded together.

A batch is cut when it reaches `max_batch` jobs or when `max_wait_s` has passed
since its first job arrived. Jobs are grouped by key (the adapter), so one batch
never mixes adapters; jobs of other keys wait for the next batch, in arrival
order. Batches run one at a time on a single worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, Protocol, TypeVar


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
    ) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._key = key
        self._on_batch = on_batch
        self._waiting: deque[J] = deque()
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="local-batch")
        self._task: asyncio.Task[None] | None = None
        self._running = 0
        self._batch_s = 0.0  # EWMA of batch durations, for the queue-wait estimate

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="micro-batcher")

    def submit(self, job: J) -> None:
        self._waiting.append(job)
        self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return self._running

    def estimated_wait_s(self) -> float:
        """Seconds before a job submitted now would start: batches ahead of it times their usual length."""
        batches_ahead = -(-len(self._waiting) // self._max_batch) + (1 if self._running else 0)
        return batches_ahead * self._batch_s

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
            started = time.perf_counter()
            try:
                await loop.run_in_executor(self._executor, self._run_batch, batch)
            except Exception as exc:  # noqa: BLE001 - a broken batch fails its jobs, never the loop
                for job in batch:
                    job.fail(exc)
            finally:
                self._running = 0
            seconds = time.perf_counter() - started
            self._batch_s = seconds if self._batch_s == 0 else 0.8 * self._batch_s + 0.2 * seconds
            self._on_batch(len(batch), seconds)

    def _take_batch(self) -> list[J]:
        """Up to max_batch live jobs sharing the first live job's key; the rest keep their order."""
        batch: list[J] = []
        kept: deque[J] = deque()
        key: Hashable = None
        while self._waiting:
            job = self._waiting.popleft()
            if job.cancelled:
                job.fail(asyncio.CancelledError())
                continue
            if not batch:
                key = self._key(job)
            if len(batch) < self._max_batch and self._key(job) == key:
                batch.append(job)
            else:
                kept.append(job)
        self._waiting = kept
        return batch
