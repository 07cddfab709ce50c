"""Write the semantic cache's labelled prompt pairs: tests/data/semantic_pairs.jsonl.

How the set is written and labelled (docs/semantic_cache.md):
- PARAPHRASES below are hand-written pairs of question templates that ask the same thing in
  other words, with the same slots (ticker, level, move, date). Filled with the same values,
  a pair is labelled `hit`: the cached answer to one is the right answer to the other.
- A near-miss takes a filled template and changes exactly one fact: a comparative flipped to
  its opposite (above/below, up/down, buy/sell, long/short, over/under, higher/lower,
  bullish/bearish, increase/decrease, outperform/underperform, rise/fall), another number,
  another ticker, another date, or a negation added. Half the time the changed prompt is also
  reworded with the template's paraphrase, so wording and facts both move. Labelled `miss`:
  serving one's answer to the other is a wrong answer.
The labels follow from the construction; the script is seeded, so the file is reproducible:
    .venv/bin/python scripts/make_semantic_pairs.py [--out tests/data/semantic_pairs.jsonl]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "semantic_pairs.jsonl"

TICKERS = ("BTC", "ETH", "SOL", "AAPL", "TSLA", "NVDA", "SPY", "QQQ", "MSFT", "AMZN", "XRP", "META")
LEVELS = ("60k", "65,000", "3,000", "150", "200", "1.10", "420", "95k", "2,500", "700", "18,000", "45")
LEVEL_WORDS = {"60k": "60,000", "65,000": "65k", "3,000": "3k", "95k": "95,000", "2,500": "2.5k", "18,000": "18k"}
NAMES = {"BTC": "bitcoin", "ETH": "ethereum", "SOL": "solana", "AAPL": "Apple", "TSLA": "Tesla", "NVDA": "Nvidia"}
MOVES = ("5%", "2%", "10%", "3%", "1.5%", "20%", "7%", "0.5%")
DATES = ("today", "tomorrow", "this week", "next week", "on Friday", "by the end of March", "in Q3", "on 2026-06-30")

# (template, paraphrase): the same question; {t} ticker, {n} level, {p} move, {d} date.
PARAPHRASES: tuple[tuple[str, str], ...] = (
    ("Will {t} close above {n} {d}?", "Is {t} going to close above {n} {d}?"),
    ("Will {t} trade above {n} {d}?", "Do you expect {t} to trade above {n} {d}?"),
    ("Will {t} stay below {n} {d}?", "Is {t} likely to stay below {n} {d}?"),
    ("Should I buy {t} {d}?", "Is it a good idea to buy {t} {d}?"),
    ("Should I sell my {t} {d}?", "Would it be wise to sell my {t} {d}?"),
    ("Is {t} bullish {d}?", "Does {t} look bullish {d}?"),
    ("Is {t} bearish {d}?", "Does the chart of {t} look bearish {d}?"),
    ("Will {t} go up {p} {d}?", "Can {t} go up {p} {d}?"),
    ("Will {t} go down {p} {d}?", "Could {t} go down {p} {d}?"),
    ("Is it time to go long {t} {d}?", "Is now the moment to go long {t} {d}?"),
    ("Is it time to go short {t} {d}?", "Should I be going short {t} {d}?"),
    ("Will {t} rise {p} {d}?", "Is {t} set to rise {p} {d}?"),
    ("Will {t} fall {p} {d}?", "Is {t} set to fall {p} {d}?"),
    ("Will {t} trade higher {d}?", "Is {t} headed higher {d}?"),
    ("Will {t} trade lower {d}?", "Is {t} headed lower {d}?"),
    ("Will volume in {t} increase {d}?", "Is volume in {t} expected to increase {d}?"),
    ("Will volatility in {t} decrease {d}?", "Do you think volatility in {t} will decrease {d}?"),
    ("Will {t} outperform the market {d}?", "Is {t} likely to outperform the market {d}?"),
    ("Will {t} underperform the market {d}?", "Is {t} likely to underperform the market {d}?"),
    ("Is {t} over {n} {d}?", "Is {t} trading over {n} {d}?"),
    ("Is {t} under {n} {d}?", "Is {t} trading under {n} {d}?"),
    ("What is the outlook for {t} {d}?", "Give me the outlook for {t} {d}."),
    ("Summarise the news on {t} {d}.", "Summarize the news about {t} {d}."),
    ("What is the trend of {t} {d}?", "Describe the trend of {t} {d}."),
    ("Will {t} break above {n} {d}?", "Do you see {t} breaking above {n} {d}?"),
    ("Will {t} drop below {n} {d}?", "Could {t} drop below {n} {d}?"),
    # the same facts written otherwise: a name for the ticker, 60k for 60,000, a synonym of the same sense
    ("Will {t} close above {n} {d}?", "Will {name} close over {level} {d}?"),
    ("Will {t} rise {p} {d}?", "Will {name} climb {p} {d}?"),
    ("Will {t} fall {p} {d}?", "Will {name} drop {p} {d}?"),
    ("Is {t} trading under {n} {d}?", "Is {name} below {level} {d}?"),
    ("Should I buy {t} {d}?", "Should I purchase {name} {d}?"),
    ("Should I sell my {t} {d}?", "Should I dump my {name} {d}?"),
    ("Is {t} bullish {d}?", "Are you bullish on {name} {d}?"),
    ("What is the outlook for {t} {d}?", "How does {name} look {d}?"),
)

OPPOSITES = (
    ("above", "below"),
    ("below", "above"),
    ("buy", "sell"),
    ("sell", "buy"),
    ("bullish", "bearish"),
    ("bearish", "bullish"),
    ("go up", "go down"),
    ("go down", "go up"),
    ("long", "short"),
    ("short", "long"),
    ("rise", "fall"),
    ("fall", "rise"),
    ("higher", "lower"),
    ("lower", "higher"),
    ("increase", "decrease"),
    ("decrease", "increase"),
    ("outperform", "underperform"),
    ("underperform", "outperform"),
    ("over", "under"),
    ("under", "over"),
)
NEGATIONS = (
    ("Will {t}", "Will {t} not"),
    ("Should I", "Should I not"),
    ("Is {t}", "Isn't {t}"),
    ("Is it", "Isn't it"),
    ("Can {t}", "Can't {t}"),
    ("Could {t}", "Couldn't {t}"),
    ("What is", "What is not"),
    ("How does", "How doesn't"),
    ("Are you", "Aren't you"),
    ("Summarise", "Do not summarise"),
)


def fill(template: str, slots: dict[str, str]) -> str:
    return template.format(**slots)


def slots(rng: random.Random) -> dict[str, str]:
    ticker, level = rng.choice(TICKERS), rng.choice(LEVELS)
    return {
        "t": ticker,
        "name": NAMES.get(ticker, ticker),
        "n": level,
        "level": LEVEL_WORDS.get(level, level),
        "p": rng.choice(MOVES),
        "d": rng.choice(DATES),
    }


def other(rng: random.Random, choices: tuple[str, ...], current: str) -> str:
    return rng.choice([c for c in choices if c != current])


def near_miss(rng: random.Random, pair: tuple[str, str], values: dict[str, str]) -> tuple[str, str, str] | None:
    """The first prompt, a prompt with one fact changed, and which fact; None if the change does not apply."""
    template, paraphrase = pair
    second = rng.choice((template, paraphrase))
    kind = rng.choices(("comparative", "number", "ticker", "date", "negation"), weights=(3, 2, 2, 2, 2))[0]
    changed = dict(values)
    if kind == "comparative":
        flips = [(a, b) for a, b in OPPOSITES if f" {a} " in f" {second.replace('?', ' ?')} "]
        if not flips:
            return None
        a, b = rng.choice(flips)
        second = f" {second} ".replace(f" {a} ", f" {b} ", 1).strip()
    elif kind == "number":
        slot = "n" if "{n}" in second or "{level}" in second else "p" if "{p}" in second else ""
        if not slot:
            return None
        changed[slot] = other(rng, LEVELS if slot == "n" else MOVES, values[slot])
        changed["level"] = LEVEL_WORDS.get(changed["n"], changed["n"])
    elif kind == "ticker":
        changed["t"] = other(rng, TICKERS, values["t"])
        changed["name"] = NAMES.get(changed["t"], changed["t"])
    elif kind == "date":
        changed["d"] = other(rng, DATES, values["d"])
    else:
        options = [(a, b) for a, b in NEGATIONS if second.startswith(a)]
        if not options:
            return None
        a, b = options[0]
        second = b + second[len(a) :]
    return fill(template, values), fill(second, changed), kind


def build(pairs_per_kind: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    while sum(r["label"] == "hit" for r in rows) < pairs_per_kind:
        pair, values = rng.choice(PARAPHRASES), slots(rng)
        a, b = fill(pair[0], values), fill(pair[1], values)
        if (a, b) not in seen:
            seen.add((a, b))
            rows.append({"a": a, "b": b, "label": "hit", "kind": "paraphrase"})
    while sum(r["label"] == "miss" for r in rows) < pairs_per_kind:
        made = near_miss(rng, rng.choice(PARAPHRASES), slots(rng))
        if made is not None and made[:2] not in seen and made[0] != made[1]:
            seen.add(made[:2])
            rows.append({"a": made[0], "b": made[1], "label": "miss", "kind": made[2]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--per-label", type=int, default=300, help="pairs labelled hit, and as many labelled miss")
    parser.add_argument("--seed", type=int, default=24)
    args = parser.parse_args()
    rows = build(args.per_label, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{len(rows)} pairs -> {args.out}")


if __name__ == "__main__":
    main()
