"""How fast llama.cpp's slots are now, and when a request arriving now would finish.

llama.cpp decodes every request that holds a slot together, one token each per step
(continuous batching): a new request starts as soon as a slot is free, its prompt is
processed within the next steps, and from then on each step is a little slower for
everyone, the more sequences share it. So the estimate needs two figures, learned from
the answers themselves (llama.cpp reports each answer's prompt and decode times):

- the prefill: seconds to process one request's uncached prompt;
- the step: seconds per decode step, by how many sequences were decoding together.

`estimate_load` turns them and the requests admitted now into the `LocalLoad` the
capacity policy (gateway/routing/capacity.py) reads: no wait while a slot is free;
otherwise the time until the slot the request would get frees up, with every request
queued before it taking the next free slot in arrival order. A request that would join
the running ones counts how many of them it would push past their deadlines.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.core.contracts import LocalLoad
from local_models.pace import GUESS_MARGIN, MARGIN, guess_step  # the same padding as the transformers pace

ALPHA = 0.3  # weight of the newest sample in each moving average


@dataclass(eq=False)
class Admitted:
    """One request the backend has taken: what the estimate needs to know about it."""

    steps: int  # decode steps it may take: max_tokens (a label answer: as many as recent label answers took)
    deadline: float | None  # time.monotonic(); None = none
    decoding: bool = False  # True once its first token came: it holds a slot and its prompt is done
    done_steps: int = 0


class SlotPace:
    """Moving averages of one request's prefill and of a decode step by sequences decoding together (1..slots).

    Written and read on the event loop.
    """

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._step = [0.0] * (self.slots + 1)
        self._prefill = 0.0
        self._seeded: set[int] = set()  # sizes whose figure came from the warm-up (0: the prefill)
        self._warming = False

    def warming(self, on: bool) -> None:
        """While on, figures are provisional: the first real figure of each kind replaces them."""
        self._warming = on

    def observe_prefill(self, seconds: float) -> None:
        self._prefill = self._mix(self._prefill, seconds, 0)

    def observe_step(self, sequences: float, seconds: float) -> None:
        """One answer's mean step time while, on average, `sequences` were decoding beside and with it."""
        size = min(max(round(sequences), 1), self.slots)
        self._step[size] = self._mix(self._step[size], seconds, size)

    def _mix(self, average: float, sample: float, key: int) -> float:
        if self._warming:
            self._seeded.add(key)
        elif key in self._seeded:
            self._seeded.discard(key)
            average = 0.0
        return sample if average == 0 else (1 - ALPHA) * average + ALPHA * sample

    @property
    def measured(self) -> bool:
        return self._prefill > 0 and any(self._step)

    @property
    def prefill_s(self) -> float:
        return MARGIN * self._prefill

    def step_s(self, sequences: int) -> float:
        size = min(max(sequences, 1), self.slots)
        return MARGIN * (self._step[size] or GUESS_MARGIN * guess_step(self._step, size))


def estimate_load(
    pace: SlotPace,
    admitted: Sequence[Admitted],
    *,
    max_in_flight: int,
    label_steps: int = 0,
    down: str = "",
    now: float | None = None,
) -> LocalLoad:
    """What a request arriving now would meet. `admitted`: the requests taken and not finished, in arrival order."""
    slots = pace.slots
    in_flight = len(admitted)
    if down:
        return LocalLoad(in_flight, max_in_flight, math.inf, measured=pace.measured, down=down, label_steps=label_steps)
    if not pace.measured:
        wait = 0.0 if in_flight < slots else math.inf
        return LocalLoad(in_flight, max_in_flight, wait, measured=False, label_steps=label_steps)
    now = time.monotonic() if now is None else now
    prefill = pace.prefill_s
    if in_flight < slots:  # a slot is free: it joins the sequences decoding now
        size = in_flight + 1
        step = pace.step_s(size)
        late = sum(
            1
            for a in admitted
            if a.deadline is not None
            and now + _remaining(a, prefill, step) > a.deadline >= now + _remaining(a, prefill, pace.step_s(in_flight))
        )
        return LocalLoad(
            in_flight,
            max_in_flight,
            0.0,
            est_prefill_s=prefill,
            est_step_s=step,
            would_delay=late,
            label_steps=label_steps,
        )
    full = pace.step_s(slots)
    ordered = sorted(admitted, key=lambda a: not a.decoding)  # those decoding hold slots; then arrival order
    free_at = [_remaining(a, prefill, full) for a in ordered[:slots]]
    heapq.heapify(free_at)
    for queued in ordered[slots:]:  # each queued request takes the next slot that frees up
        heapq.heappush(free_at, heapq.heappop(free_at) + _remaining(queued, prefill, full))
    wait = heapq.heappop(free_at)
    return LocalLoad(in_flight, max_in_flight, wait, est_prefill_s=prefill, est_step_s=full, label_steps=label_steps)


def _remaining(a: Admitted, prefill: float, step: float) -> float:
    """Seconds until `a` finishes at `step` per step: its prefill if not begun, then the steps it has left."""
    return (0.0 if a.decoding else prefill) + max(a.steps - a.done_steps, 0) * step
