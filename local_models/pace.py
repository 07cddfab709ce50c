"""How fast the in-process model is now, and when a request arriving now would finish.

`Pace` keeps moving averages of the model's forward passes by batch size: the
first pass of a batch (the prefill) and each pass after it (a decode step), each
timed from its start to the start of the next pass, so the work between passes
(choosing tokens, decoding text, streaming it) counts too. It learns them from
forward hooks on the model, so every batch the backend runs
refreshes them; on a machine that gets busier the figures follow. The backend
runs a short batch of one, two and `max_batch` rows at start-up `warming()`, so the
first burst already has figures to go on; the first real batch of a size replaces
its warm-up figure. Two is timed as well because one row is a special case: on two
CPU cores a step of one row took 38 ms, of two 61 ms, of eight 68 ms, so a line
from one to eight would promise sizes 2-7 a step about a quarter too fast.

`estimate_load` turns them, the batch running now and the jobs queued, into the
`LocalLoad` the capacity policy reads. Batches run one at a time, in arrival
order, up to `max_batch` jobs each; a batch lasts its prefill plus its longest
job's steps.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.contracts import LocalLoad

ALPHA = 0.3  # weight of the newest sample in each moving average
MARGIN = 1.15  # every figure is padded by this: a burst's own arrivals compete with the model for the CPU
GUESS_MARGIN = 1.2  # a figure for a size not timed yet is guessed from others; the guess is padded by this too


@dataclass(frozen=True, slots=True)
class RunningBatch:
    """The batch on the model now: its size, its longest job's steps, when it started (time.monotonic)."""

    size: int
    steps: int
    started: float


class Pace:
    """Moving averages of prefill and decode-step seconds, by batch size (1..max_batch).

    Written by the model's worker thread, read on the event loop: each figure is a
    float in a list of fixed length, replaced whole.
    """

    def __init__(self, max_batch: int) -> None:
        self.max_batch = max(1, max_batch)
        self._prefill = [0.0] * (self.max_batch + 1)
        self._step = [0.0] * (self.max_batch + 1)
        self._passes = 0  # forward passes since the current batch started
        self._pass_started = 0.0
        self._size = 0  # rows of the pass under way (0: none timed yet in this batch)
        self._warming = False
        self._seeded: set[tuple[int, int]] = set()  # (table, size) figures from the warm-up, replaced by real ones

    # -- learning ------------------------------------------------------------------------

    def batch_started(self) -> None:
        """The next forward pass is a new batch's prefill."""
        self._passes = 0
        self._size = 0

    def observe(self, size: int, seconds: float) -> None:
        """One pass of `size` rows took `seconds`: the batch's prefill if it is its first pass."""
        which = 0 if self._passes == 0 else 1
        table = (self._prefill, self._step)[which]
        self._passes += 1
        i = min(max(size, 1), self.max_batch)
        if self._warming:
            self._seeded.add((which, i))
        elif (which, i) in self._seeded:
            self._seeded.discard((which, i))
            table[i] = 0.0
        table[i] = seconds if table[i] == 0 else (1 - ALPHA) * table[i] + ALPHA * seconds

    def attach(self, model: Any) -> None:
        """Time the passes of a torch module: each from its start to the start of the next one in the same batch
        (its batch size from `input_ids`). A batch's last pass is not timed."""

        def before(module: Any, args: Any, kwargs: Any) -> None:
            now = time.perf_counter()
            if self._size:  # the previous pass of this batch ends where this one starts
                self.observe(self._size, now - self._pass_started)
            ids = kwargs.get("input_ids", args[0] if args else None)
            self._size = int(ids.shape[0]) if ids is not None else 0
            self._pass_started = now

        model.register_forward_pre_hook(before, with_kwargs=True)

    @contextlib.contextmanager
    def warming(self) -> Iterator[None]:
        """Passes timed inside the block are provisional: the first real pass of each size replaces them."""
        self._warming = True
        try:
            yield
        finally:
            self._warming = False

    # -- reading -------------------------------------------------------------------------

    @property
    def measured(self) -> bool:
        return any(self._prefill) and any(self._step)

    def prefill_s(self, size: int) -> float:
        return _at(self._prefill, size)

    def step_s(self, size: int) -> float:
        return _at(self._step, size)

    def batch_s(self, size: int, steps: int) -> float:
        """How long a batch of `size` jobs lasts when its longest job takes `steps` steps after the prefill."""
        return self.prefill_s(size) + steps * self.step_s(size)


class LabelSteps:
    """How many steps after the prefill label answers take: the most of the last `window` label batches.

    One when the label is checked in a single pass; up to max_tokens when the model
    does not stop at the label (a task on the base model often talks on). Written by
    the worker thread, read on the event loop: a tuple replaced whole.
    """

    def __init__(self, window: int = 16) -> None:
        self._window = window
        self._recent: tuple[int, ...] = ()

    def observe(self, steps: int) -> None:
        self._recent = (*self._recent[1 - self._window :], max(steps, 1))

    def steps(self, max_tokens: int) -> int:
        """The steps to expect for a label answer allowed `max_tokens`: max_tokens before any was seen."""
        return min(max(self._recent, default=max_tokens), max(max_tokens, 1))

    @property
    def most(self) -> int:
        """The most steps of recent label batches; 0 before any."""
        return max(self._recent, default=0)


def _at(table: Sequence[float], size: int) -> float:
    """The figure for `size`, padded by MARGIN: measured, else a guess padded by GUESS_MARGIN as well."""
    size = min(max(size, 1), len(table) - 1)
    return MARGIN * (table[size] or GUESS_MARGIN * guess_step(table, size))


def guess_step(table: Sequence[float], size: int) -> float:
    """A step time for a batch size not measured yet (`table[size]` is 0), from the sizes that were (the
    transformers and llama.cpp paces share it). Interpolated between measured sizes; above the largest
    measured, extrapolated along the last two
    (at most in proportion to size); below the smallest, the smallest's."""
    below = [i for i in range(1, size) if table[i]]
    above = [i for i in range(size + 1, len(table)) if table[i]]
    if below and above:
        lo, hi = below[-1], above[0]
        return table[lo] + (table[hi] - table[lo]) * (size - lo) / (hi - lo)
    if above:
        return table[above[0]]
    if not below:
        return 0.0
    top = below[-1]
    proportional = table[top] * size / top
    if len(below) < 2:
        return proportional
    prev = below[-2]
    slope = max(0.0, (table[top] - table[prev]) / (top - prev))
    return min(proportional, table[top] + slope * (size - top))


def estimate_load(
    pace: Pace,
    *,
    in_flight: int,
    max_in_flight: int,
    running: RunningBatch | None,
    queued: Sequence[tuple[int, float | None]],
    max_wait_s: float,
    label_steps: int = 0,
    now: float | None = None,
) -> LocalLoad:
    """The load a request arriving now would meet.

    `queued`: (steps, deadline) of each job waiting (admitted and not yet running), in
    order (a label job as many as recent label answers took, free text its max_tokens);
    `label_steps` is passed on for the capacity check (LocalLoad.label_steps). A new job joins the last
    queued batch when it has room, else starts one after it; it waits for the batch
    running now, every full batch ahead and the batching window. Joining makes that
    batch larger and its steps slower: `would_delay` counts the jobs already in it
    that would then finish after their deadline (such a request should be refused).
    """
    max_batch = pace.max_batch
    if not pace.measured:
        next_batch = running is None and len(queued) < max_batch
        return LocalLoad(
            in_flight, max_in_flight, 0.0 if next_batch else math.inf, measured=False, label_steps=label_steps
        )
    now = time.monotonic() if now is None else now
    wait = 0.0
    if running is not None:
        step = pace.step_s(running.size)
        wait = max(pace.batch_s(running.size, running.steps) - (now - running.started), step)
    full = len(queued) - len(queued) % max_batch
    for start in range(0, full, max_batch):
        wait += pace.batch_s(max_batch, max(steps for steps, _ in queued[start : start + max_batch]))
    wait += max_wait_s
    joining = queued[full:]
    size = len(joining) + 1
    prefill, step = pace.prefill_s(size), pace.step_s(size)
    starts = now + wait + prefill
    late = sum(1 for steps, deadline in joining if deadline is not None and starts + steps * step > deadline)
    return LocalLoad(
        in_flight,
        max_in_flight,
        wait,
        est_prefill_s=prefill,
        est_step_s=step,
        would_delay=late,
        label_steps=label_steps,
    )
