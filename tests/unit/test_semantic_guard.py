"""The semantic cache's guard, and 0 false hits on the labelled near-misses (tests/data/semantic_pairs.jsonl).

A hit needs the embedding's similarity AND the guard: a near-miss the guard refuses can never be a
false hit, whatever the threshold or the model, so refusing every labelled near-miss here means
0 false hits at the default threshold (scripts/bench_semantic_cache.py measures the rest).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from gateway.routing.semantic_guard import check, facts

PAIRS = Path(__file__).resolve().parents[1] / "data" / "semantic_pairs.jsonl"


def pairs() -> list[dict[str, str]]:
    return [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_labelled_set_has_500_pairs_of_both_labels_and_every_kind_of_near_miss() -> None:
    rows = pairs()
    assert len(rows) >= 500
    kinds = Counter(r["kind"] for r in rows if r["label"] == "miss")
    assert set(kinds) == {"comparative", "number", "ticker", "date", "negation"}
    assert Counter(r["label"] for r in rows)["hit"] >= 250


def test_every_labelled_near_miss_is_refused() -> None:
    let_through = [(r["a"], r["b"]) for r in pairs() if r["label"] == "miss" and check(r["b"], r["a"]).allowed]
    assert let_through == []


def test_the_labelled_paraphrases_pass_the_guard() -> None:
    rows = [r for r in pairs() if r["label"] == "hit"]
    refused = [(r["a"], r["b"], check(r["b"], r["a"]).reason) for r in rows if not check(r["b"], r["a"]).allowed]
    assert len(refused) <= len(rows) // 20, refused[:5]


@pytest.mark.parametrize(
    ("ours", "theirs", "reason"),
    [
        ("BTC above 60k?", "BTC below 60k?", "polar"),
        ("Will ETH go up today?", "Will ETH go down today?", "polar"),
        ("Should I buy AAPL?", "Should I sell AAPL?", "polar"),
        ("Go long TSLA?", "Go short TSLA?", "polar"),
        ("Is the desk bullish on gold?", "Is the desk bearish on gold?", "polar"),
        ("Will volume increase?", "Will volume decrease?", "polar"),
        ("Is NVDA trading over 900?", "Is NVDA trading under 900?", "polar"),
        ("Will yields move higher?", "Will yields move lower?", "polar"),
        ("How do I enable 2FA?", "How do I disable 2FA?", "polar"),
        ("BTC above 60k?", "BTC above 65k?", "numbers"),
        ("Is SPY up 5%?", "Is SPY up 5 bp?", "numbers"),
        ("Is SPY up 5%?", "Is SPY up -5%?", "numbers"),
        ("BTC above 60k?", "ETH above 60k?", "tickers"),
        ("Is BTC above ETH?", "Is ETH above BTC?", "tickers"),
        ("Where does SOL close today?", "Where does SOL close tomorrow?", "dates"),
        ("BTC on 2026-06-30?", "BTC on 2026-07-30?", "dates"),
        ("SPY next week?", "SPY last week?", "dates"),
        ("SPY over 5 days?", "SPY over 5 weeks?", "dates"),
        ("Is TSLA bullish?", "Is TSLA not bullish?", "negation"),
        ("Is TSLA bullish?", "Isn't TSLA bullish?", "negation"),
    ],
)
def test_a_changed_fact_is_refused_naming_it(ours: str, theirs: str, reason: str) -> None:
    verdict = check(ours, theirs)
    assert not verdict.allowed and verdict.reason == reason


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("Will BTC close above 60k today?", "Will bitcoin close over $60,000 today?"),
        ("Will ETH rise 5% this week?", "Is ether set to climb 5 percent this week?"),
        ("Should I buy $AAPL?", "Is it wise to purchase Apple?"),
        ("Is TSLA not bullish?", "Isn't TSLA bullish?"),
        ("What is the outlook for SPY?", "Give me the outlook for SPY."),
    ],
)
def test_the_same_facts_in_other_words_pass(ours: str, theirs: str) -> None:
    assert check(ours, theirs).allowed


def test_numbers_are_read_with_scale_unit_and_sign() -> None:
    assert facts("60k, 60,000, 1.5m, 2bn, 5%, 25 bps, -3%").numbers == (
        "60000",
        "1500000",
        "2000000000",
        "5%",
        "25bp",
        "-3%",
    )
    assert facts("5 days").numbers == facts("five days").numbers == ("5",)
