"""One wall-time budget shared by the tasks of a run, whichever process runs them.

Tasks start in the run's order, each on the first worker process that is free. When one starts,
it gets its part of the time left (`budget.task_budget`): by weight, given the tasks still waiting
and when the busy workers free up. The ledger records when each task ends, planned while it
runs, actual once it is done, so a task that stops early (its validation loss stopped improving)
hands the rest of its time to the tasks that start after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from finetune.budget import task_budget

MIN_TASK_S = 1.0


@dataclass(frozen=True)
class Schedule:
    tasks: tuple[str, ...]  # in the order they start
    weights: Mapping[str, float]
    workers: int
    deadline: float | None  # time.time() by which every task ends; None: bounded by steps only
    ends: MutableMapping[str, float]  # task -> when it ends; shared by the workers (a manager's dict)
    lock: AbstractContextManager[Any]  # held while a task reads the ledger and books its time

    def start(self, task: str) -> float | None:
        """Book the task's time from now; its budget in seconds (None without a deadline)."""
        if self.deadline is None:
            return None
        with self.lock:
            now = time.time()
            booked = dict(self.ends)
            waiting = [t for t in self.tasks if t not in booked and t != task]
            busy = [end for t, end in booked.items() if end > now and t != task]
            weights = [self.weights[task], *(self.weights[t] for t in waiting)]
            budget = max(MIN_TASK_S, task_budget(now, self.deadline, weights, busy, self.workers))
            self.ends[task] = now + budget
        return budget

    def finish(self, task: str) -> None:
        """The task is done: its worker is free from now."""
        if self.deadline is None:
            return
        with self.lock:
            self.ends[task] = time.time()
