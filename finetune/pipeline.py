"""The whole run: every task within one wall-time budget, one after another in a process, or
in `jobs` processes side by side (one torch thread each: on small CPUs that beats more
threads in one process). Each task's share of the remaining time follows its weight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from finetune.budget import partition, share
from finetune.options import RunOptions
from finetune.publish.report import results_table
from finetune.task_run import TaskOutcome, run_task

log = logging.getLogger(__name__)


def run(tasks: Sequence[str], options: RunOptions, budget_s: float | None, jobs: int = 1) -> list[TaskOutcome]:
    """Train, evaluate and publish every task; the budget covers the whole run (wall time)."""
    run_dir = options.artifacts / "runs" / time.strftime("%Y%m%d-%H%M%S")
    # keep a little of the budget for starting worker processes and writing the summary
    deadline = None if budget_s is None else time.time() + budget_s - min(30.0, 0.02 * budget_s)
    weights = {t: float(options.weights.get(t, 1.0)) for t in tasks}
    groups = partition(weights, jobs)
    if len(groups) == 1:
        outcomes = run_group(groups[0], options, deadline, run_dir, 0)
    else:
        context = get_context("spawn")
        with ProcessPoolExecutor(max_workers=len(groups), mp_context=context) as pool:
            futures = [pool.submit(run_group, g, options, deadline, run_dir, i, True) for i, g in enumerate(groups)]
            outcomes = [o for f in futures for o in f.result()]
    if not outcomes:
        return []  # a helper process under accelerate launch: the main process reports
    order = {t: i for i, t in enumerate(tasks)}
    outcomes.sort(key=lambda o: order.get(o.summary.evaluation.task, 0))
    table = results_table([o.summary for o in outcomes])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.md").write_text(
        f"# Fine-tune run {run_dir.name}\n\nBudget: {_budget_text(budget_s)}, {len(groups)} process(es), "
        f"{options.threads} torch thread(s) each.\n\n{table}"
    )
    return outcomes


def _budget_text(budget_s: float | None) -> str:
    return "steps only" if budget_s is None else f"{budget_s / 60:.0f} min"


def run_group(
    tasks: Sequence[str],
    options: RunOptions,
    deadline: float | None,
    run_dir: Path,
    position: int,
    own_process: bool = False,
) -> list[TaskOutcome]:
    import torch

    from finetune.train.distributed import make_accelerator

    torch.set_num_threads(options.threads)
    if own_process:
        logging.basicConfig(level=logging.INFO, format=f"%(asctime)s [worker {position}] %(message)s")
    accelerator = make_accelerator()
    weights = {t: float(options.weights.get(t, 1.0)) for t in tasks}
    outcomes = []
    for i, task in enumerate(tasks):
        budget = None
        if deadline is not None:
            budget = max(1.0, share(deadline - time.time(), task, tasks[i:], weights))
        outcome = run_task(task, options, budget, run_dir, accelerator, position)
        if outcome is not None:
            outcomes.append(outcome)
    return outcomes
