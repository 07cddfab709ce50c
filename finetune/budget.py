"""Time budgets: parsing "20m" / "2h" / "90s" / "1h30m", and each task's part of the time left."""

from __future__ import annotations

import re
from collections.abc import Sequence

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([hms]?)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "": 1.0}


def parse_duration(text: str) -> float:
    """Seconds in "20m", "2h", "1h30m", "90s" or "90" (seconds)."""
    cleaned = text.strip().lower().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(cleaned):
        match = _PART.match(cleaned, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot read duration {text!r}; use e.g. 20m, 2h, 1h30m or 90s")
        total += float(match.group(1)) * _UNIT[match.group(2)]
        pos = match.end()
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total


def task_budget(
    now: float, deadline: float, weights: Sequence[float], busy_until: Sequence[float], workers: int
) -> float:
    """Seconds for a task starting now on a free worker. `weights` holds its weight first, then those of
    the tasks still waiting, in the order they start; `busy_until` says when each other busy worker
    frees up (tasks that stop early free theirs sooner, and the waiting ones get that time).

    The plan is list scheduling: every waiting task goes to the worker that frees up first (on a tie,
    to another worker than this one), and each task runs for the same time per unit of weight, the
    longest that still ends every task by the deadline. The task gets its part of that plan, or the
    rest of the time when no other task will run on this worker after it."""
    left = deadline - now
    if left <= 0:
        return 0.0
    others = [min(max(now, t), deadline) for t in busy_until][: workers - 1]
    others += [now] * (workers - 1 - len(others))

    def schedule(per_weight: float) -> tuple[bool, bool]:
        """Whether every task ends by the deadline, and whether this worker runs another task."""
        free = [now + per_weight * weights[0], *others]
        again = False
        for weight in weights[1:]:
            i = min(range(len(free)), key=lambda k: (free[k], k == 0))
            free[i] += per_weight * weight
            again = again or i == 0
        return max(free) <= deadline + 1e-9, again

    low, high = 0.0, left / weights[0]
    if schedule(high)[0]:
        low = high
    else:
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if schedule(middle)[0] else (low, middle)
    return low * weights[0] if schedule(low)[1] else left
