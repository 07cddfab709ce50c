"""The whole run: every task within one wall-time budget, one after another in this process, or
on `jobs` worker processes side by side (one torch thread each: on small CPUs that beats more
threads in one process). Tasks start in order, each on the first free worker, with its part of
the time left (finetune.schedule); a task whose validation loss stops improving ends early and
leaves its time to the tasks after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from multiprocessing import get_context
from pathlib import Path

from finetune.options import RunOptions
from finetune.publish.report import results_table
from finetune.schedule import Schedule
from finetune.task_run import TaskOutcome, run_task

log = logging.getLogger(__name__)


def run(tasks: Sequence[str], options: RunOptions, budget_s: float | None, jobs: int = 1) -> list[TaskOutcome]:
    """Train, evaluate and publish every task; the budget covers the whole run (wall time)."""
    run_dir = options.artifacts / "runs" / time.strftime("%Y%m%d-%H%M%S")
    # keep a little of the budget for starting worker processes and writing the summary
    deadline = None if budget_s is None else time.time() + budget_s - min(30.0, 0.02 * budget_s)
    weights = {t: float(options.weights.get(t, 1.0)) for t in tasks}
    workers = max(1, min(jobs, len(tasks)))
    if workers == 1:
        schedule = Schedule(tuple(tasks), weights, 1, deadline, {}, nullcontext())
        found = [run_one(task, options, schedule, run_dir, 0) for task in tasks]
    else:
        context = get_context("spawn")
        with (
            context.Manager() as manager,
            ProcessPoolExecutor(workers, mp_context=context, initializer=_worker, initargs=(options.threads,)) as pool,
        ):
            schedule = Schedule(tuple(tasks), weights, workers, deadline, manager.dict(), manager.Lock())
            futures = [pool.submit(run_one, t, options, schedule, run_dir, i % workers) for i, t in enumerate(tasks)]
            found = [f.result() for f in futures]
    outcomes = [o for o in found if o is not None]
    if not outcomes:
        return []  # a helper process under accelerate launch: the main process reports
    order = {t: i for i, t in enumerate(tasks)}
    outcomes.sort(key=lambda o: order.get(o.summary.evaluation.task, 0))
    table = results_table([o.summary for o in outcomes])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.md").write_text(
        f"# Fine-tune run {run_dir.name}\n\nBudget: {_budget_text(budget_s)}, {workers} process(es), "
        f"{options.threads} torch thread(s) each.\n\n{table}"
    )
    return outcomes


def _budget_text(budget_s: float | None) -> str:
    return "steps only" if budget_s is None else f"{budget_s / 60:.0f} min"


def _worker(threads: int) -> None:
    """Set up a worker process once: its torch threads and its log lines."""
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(processName)s] %(message)s")


def run_one(task: str, options: RunOptions, schedule: Schedule, run_dir: Path, position: int) -> TaskOutcome | None:
    """One task with the time the schedule gives it when it starts; its worker is free again after."""
    import torch

    from finetune.train.distributed import make_accelerator

    torch.set_num_threads(options.threads)
    budget = schedule.start(task)
    try:
        return run_task(task, options, budget, run_dir, make_accelerator(), position)
    finally:
        schedule.finish(task)
