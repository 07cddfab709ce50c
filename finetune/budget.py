"""Time budgets: parsing "20m" / "2h" / "90s" / "1h30m", and sharing one budget among tasks."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

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


def partition(weights: Mapping[str, float], workers: int) -> list[list[str]]:
    """Tasks split into `workers` groups of similar total weight (largest first, to the lightest group)."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(workers, len(weights))))]
    loads = [0.0] * len(groups)
    for task in sorted(weights, key=lambda t: -weights[t]):
        i = loads.index(min(loads))
        groups[i].append(task)
        loads[i] += weights[task]
    return [g for g in groups if g]


def share(remaining_s: float, task: str, queue: Sequence[str], weights: Mapping[str, float]) -> float:
    """This task's part of the remaining time, by weight among the tasks still to run (itself included)."""
    total = sum(weights[t] for t in queue)
    return remaining_s * weights[task] / total if total > 0 else remaining_s
