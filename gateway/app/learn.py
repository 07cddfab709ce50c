"""`python -m gateway learn status|export|purge`: the training rows, read from the store the config names.

They open the same store the gateway writes (SQLite under state_dir, or the
shared Redis), so they work with the gateway running or not. `export` writes
the JSONL that `python -m finetune --data` reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TextIO

from gateway.config import Config
from gateway.state.learning.store import TaskRows
from gateway.state.open import open_state


async def status(config: Config, out: TextIO) -> None:
    state = open_state(config)
    try:
        tasks = await state.training.status()
        raised = await state.training.thresholds()
    finally:
        await state.aclose()
    learning = sorted(name for name, task in config.tasks.items() if task.learn)
    if not config.learning.enabled:
        out.write("learning: off ([learning] enabled = false); rows already kept stay until purged\n")
    else:
        out.write(f"learning: on for {', '.join(learning) or 'no task (set learn = true under [tasks.NAME])'}\n")
    if raised:
        listed = ", ".join(f"{task} {value:.3f}" for task, value in sorted(raised.items()))
        out.write(f"thresholds raised by the live audit: {listed}\n")
    if not tasks:
        out.write("no training rows\n")
        return
    out.write(f"{'task':<16} {'rows':>7}  {'from (UTC)':<16}  {'to (UTC)':<16}  labels\n")
    for row in tasks:
        out.write(
            f"{row.task:<16} {row.rows:>7}  {_when(row.first_ts):<16}  {_when(row.last_ts):<16}  {_labels(row)}\n"
        )


async def export(config: Config, task: str, out: TextIO) -> int:
    state = open_state(config)
    try:
        rows = await state.training.rows(task)
    finally:
        await state.aclose()
    system = config.tasks[task].system_prompt if task in config.tasks else ""
    for row in rows:
        out.write(row.to_jsonl(system) + "\n")
    return len(rows)


async def purge(config: Config, task: str | None, out: TextIO) -> int:
    """Delete `task`'s rows (None: every task's) and say how many went."""
    state = open_state(config)
    try:
        deleted = await state.training.purge(task)
    finally:
        await state.aclose()
    out.write(f"deleted {deleted} training rows of {'every task' if task is None else f'task {task}'}\n")
    return deleted


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _labels(row: TaskRows) -> str:
    return ", ".join(f"{label or '(no label)'} {count}" for label, count in row.labels.items())
