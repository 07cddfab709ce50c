"""The semantic cache's guard: two prompts close in meaning may still ask opposite things.

Embeddings place "BTC above 60k?" and "BTC below 60k?" almost on top of each other
(cosine 0.99 with all-MiniLM-L6-v2). A semantic hit is therefore refused unless
both prompts carry the same *facts*, read with plain rules:

- numbers, with their scale and unit: `60k`, `60,000` and `60 thousand` are one value; `5%`,
  `5 bp` and `5` are three; a leading minus counts;
- tickers and asset names: upper-case symbols (`BTC`, `$AAPL`, `BTC/USD`) and a short table of
  names (bitcoin = BTC, ether = ETH, ...);
- dates and times: ISO dates, month and day names, and words such as today, tomorrow, next,
  last, week, quarter, Q1;
- polar words, grouped so that synonyms agree and opposites differ: above/over/exceed against
  below/under, up/rise/rally against down/fall/drop, buy against sell, long against short,
  bullish against bearish, higher against lower, increase against decrease, and more;
- negation: the number of not, no, never, -n't, without, ...

Each facet is compared as the sequence of its distinct values in order of first appearance, so
"BTC vs ETH" and "ETH vs BTC" differ too. Anything the rules do not read is left to the
embedding's threshold. The guard only ever refuses: a paraphrase it cannot read costs a hit,
never a wrong answer.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

_SCALE = {
    "k": 1e3,
    "thousand": 1e3,
    "m": 1e6,
    "mm": 1e6,
    "mn": 1e6,
    "million": 1e6,
    "b": 1e9,
    "bn": 1e9,
    "billion": 1e9,
    "t": 1e12,
    "tn": 1e12,
    "trillion": 1e12,
}
_UNIT = {
    "%": "%",
    "percent": "%",
    "pct": "%",
    "per cent": "%",
    "bp": "bp",
    "bps": "bp",
    "basis points": "bp",
    "basis point": "bp",
    "x": "x",
}
_WORD_NUMBERS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "twenty": 20,
    "thirty": 30,
    "fifty": 50,
    "hundred": 100,
    "half": 0.5,
    "double": 2,
    "twice": 2,
    "triple": 3,
}
_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+\u2212])?\$?(?P<digits>\d+(?:[,\u202f]\d{3})*(?:\.\d+)?|\.\d+)"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|mm|mn|bn|tn|k|m|b|t)(?![a-z]))?"
    r"(?:\s?(?P<unit>%|percent|per cent|pct|basis points?|bps|bp|x)(?![a-z]))?",
    re.IGNORECASE,
)
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b|\b(\d{1,2})/(\d{1,2})/(\d{2,4})\b")
_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_WORD = re.compile(r"[A-Za-z$][A-Za-z0-9$./&-]*(?:'[a-z]+)?")

# Asset names as people write them, mapped to their symbol; upper-case symbols are read as they are.
_ASSETS = {
    "bitcoin": "BTC",
    "btc": "BTC",
    "xbt": "BTC",
    "ether": "ETH",
    "ethereum": "ETH",
    "eth": "ETH",
    "solana": "SOL",
    "sol": "SOL",
    "dogecoin": "DOGE",
    "doge": "DOGE",
    "ripple": "XRP",
    "xrp": "XRP",
    "cardano": "ADA",
    "litecoin": "LTC",
    "gold": "XAU",
    "silver": "XAG",
    "oil": "OIL",
    "crude": "OIL",
    "brent": "BRENT",
    "wti": "WTI",
    "apple": "AAPL",
    "aapl": "AAPL",
    "tesla": "TSLA",
    "tsla": "TSLA",
    "nvidia": "NVDA",
    "nvda": "NVDA",
    "microsoft": "MSFT",
    "msft": "MSFT",
    "amazon": "AMZN",
    "amzn": "AMZN",
    "google": "GOOGL",
    "alphabet": "GOOGL",
    "meta": "META",
    "netflix": "NFLX",
    "spy": "SPY",
    "qqq": "QQQ",
    "nasdaq": "NASDAQ",
    "dow": "DOW",
    "euro": "EUR",
    "eur": "EUR",
    "dollar": "USD",
    "usd": "USD",
    "yen": "JPY",
    "jpy": "JPY",
    "pound": "GBP",
    "sterling": "GBP",
    "gbp": "GBP",
    "yuan": "CNY",
    "franc": "CHF",
}
_NOT_TICKERS = frozenset({"I", "A", "OK", "AM", "PM", "Q"})

_DATE_WORDS = {
    **{
        month: f"month:{i}"
        for i, names in enumerate(
            (
                ("january", "jan"),
                ("february", "feb"),
                ("march", "mar"),
                ("april", "apr"),
                ("May",),
                ("june", "jun"),
                ("july", "jul"),
                ("august", "aug"),
                ("september", "sep", "sept"),
                ("october", "oct"),
                ("november", "nov"),
                ("december", "dec"),
            ),
            start=1,
        )
        for month in names
    },
    **{
        day: f"weekday:{i}"
        for i, names in enumerate(
            (
                ("monday", "mon"),
                ("tuesday", "tue", "tues"),
                ("wednesday", "wed"),
                ("thursday", "thu", "thurs"),
                ("friday", "fri"),
                ("saturday", "sat"),
                ("sunday", "sun"),
            )
        )
        for day in names
    },
    **{word: word for word in ("today", "tomorrow", "yesterday", "tonight", "weekend", "overnight", "intraday")},
    **{word: "future" for word in ("next", "coming", "upcoming", "following")},
    **{word: "past" for word in ("last", "previous", "past", "prior", "ago", "preceding")},
    **{f"{unit}{s}": f"unit:{unit}" for unit in ("minute", "hour", "day", "week", "month", "year") for s in ("", "s")},
    **{word: "unit:quarter" for word in ("quarter", "quarters", "quarterly")},
    **{word: "unit:day" for word in ("daily", "session", "sessions")},
    **{word: "unit:week" for word in ("weekly", "wtd")},
    **{word: "unit:month" for word in ("monthly", "mtd")},
    **{word: "unit:year" for word in ("yearly", "annual", "annually", "ytd")},
    **{word: "unit:hour" for word in ("hourly", "1h", "4h")},
    **{f"q{i}": f"q{i}" for i in range(1, 5)},
    **{f"h{i}": f"h{i}" for i in range(1, 3)},
    "am": "am",
    "pm": "pm",
    "morning": "am",
    "afternoon": "pm",
    "evening": "pm",
    "eod": "eod",
    "eow": "eow",
    "open": "session:open",
    "opening": "session:open",
    "opened": "session:open",
    "opens": "session:open",
    "close": "session:close",
    "closing": "session:close",
    "closed": "session:close",
    "closes": "session:close",
}

# Polar words: one group per meaning, each with its opposite somewhere in the table. Synonyms share a group.
_POLAR_GROUPS: dict[str, tuple[str, ...]] = {
    "above": ("above", "over", "exceed", "exceeds", "exceeding", "beyond", "past", "greater", "more", "atop"),
    "below": ("below", "under", "beneath", "less", "fewer", "underneath"),
    "up": (
        "up",
        "rise",
        "rises",
        "rising",
        "rose",
        "risen",
        "climb",
        "climbs",
        "climbing",
        "gain",
        "gains",
        "gaining",
        "rally",
        "rallies",
        "rallying",
        "surge",
        "surges",
        "jump",
        "jumps",
        "soar",
        "soars",
        "advance",
        "advances",
        "upward",
        "upwards",
        "uptrend",
        "appreciate",
    ),
    "down": (
        "down",
        "fall",
        "falls",
        "falling",
        "fell",
        "fallen",
        "drop",
        "drops",
        "dropping",
        "dropped",
        "decline",
        "declines",
        "declining",
        "slide",
        "slides",
        "sink",
        "sinks",
        "plunge",
        "plunges",
        "tumble",
        "tumbles",
        "slump",
        "slumps",
        "crash",
        "crashes",
        "downward",
        "downwards",
        "downtrend",
        "depreciate",
    ),
    "higher": ("higher", "high", "highs", "highest", "top", "peak", "max", "maximum", "ceiling"),
    "lower": ("lower", "low", "lows", "lowest", "bottom", "trough", "min", "minimum", "floor"),
    "increase": ("increase", "increases", "increased", "increasing", "grow", "grows", "growth", "expand", "raise"),
    "decrease": ("decrease", "decreases", "decreased", "decreasing", "shrink", "shrinks", "contract", "reduce", "cut"),
    "buy": ("buy", "buys", "buying", "bought", "purchase", "accumulate", "bid", "acquire"),
    "sell": ("sell", "sells", "selling", "sold", "dump", "offload", "offer", "liquidate", "divest"),
    "long": ("long", "longs"),
    "short": ("short", "shorts", "shorting", "shorted"),
    "bullish": ("bullish", "bull", "bulls", "optimistic"),
    "bearish": ("bearish", "bear", "bears", "pessimistic"),
    "strong": ("strong", "stronger", "strongest", "strength", "strengthen", "strengthens"),
    "weak": ("weak", "weaker", "weakest", "weakness", "weaken", "weakens"),
    "outperform": ("outperform", "outperforms", "outperformed", "outperforming", "beat", "beats", "overweight"),
    "underperform": ("underperform", "underperforms", "underperformed", "underperforming", "lag", "lags", "miss"),
    "upgrade": ("upgrade", "upgrades", "upgraded"),
    "downgrade": ("downgrade", "downgrades", "downgraded"),
    "overbought": ("overbought", "overvalued", "expensive"),
    "oversold": ("oversold", "undervalued", "cheap"),
    "support": ("support", "supports"),
    "resistance": ("resistance",),
    "profit": ("profit", "profits", "profitable", "winner", "winners", "gainers"),
    "loss": ("loss", "losses", "losing", "loser", "losers"),
    "positive": ("positive",),
    "negative": ("negative",),
    "inflow": ("inflow", "inflows"),
    "outflow": ("outflow", "outflows"),
    "hawkish": ("hawkish", "hike", "hikes", "tighten", "tightening"),
    "dovish": ("dovish", "ease", "easing", "cuts"),
    "calls": ("calls",),
    "puts": ("puts",),
    "best": ("best", "most"),
    "worst": ("worst", "least"),
    "before": ("before", "earlier"),
    "after": ("after", "later"),
    "enable": ("enable", "enabled", "allow", "allowed", "permit", "include", "add"),
    "disable": ("disable", "disabled", "deny", "block", "forbid", "exclude", "remove"),
    "widen": ("widen", "widens", "widening", "steepen", "steepening"),
    "narrow": ("narrow", "narrows", "narrowing", "flatten", "flattening"),
    "inflation": ("inflation", "inflationary"),
    "deflation": ("deflation", "deflationary"),
    "win": ("win", "wins", "won"),
    "lose": ("lose", "loses", "lost"),
    "open_position": ("enter", "entry", "opening"),
    "close_position": ("exit", "exits"),
}
_POLAR = {word: group for group, words in _POLAR_GROUPS.items() for word in words}
_NEGATIONS = frozenset(
    {"not", "no", "never", "without", "neither", "nor", "none", "nothing", "nobody", "cannot", "nowhere", "unless"}
)


@dataclass(frozen=True, slots=True)
class Facts:
    """What a prompt says that an embedding may not tell apart; two prompts match only when these are equal."""

    numbers: tuple[str, ...]
    tickers: tuple[str, ...]
    dates: tuple[str, ...]
    polar: tuple[str, ...]
    negations: int


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    allowed: bool
    reason: str  # "" when allowed, else the facet that differs: numbers | tickers | dates | polar | negation


def facts(text: str) -> Facts:
    """The facts of one prompt (see the module's docstring for the rules)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    dates, text = _dates(text)
    numbers = [_number(m) for m in _NUMBER.finditer(text)]
    words = _Words()
    for word in _WORD.findall(_NUMBER.sub(" ", text)):
        words.read(word.strip("./&-"))
    return Facts(
        _distinct(numbers + words.numbers),
        _distinct(words.tickers),
        _distinct(dates + words.dates),
        _distinct(words.polar),
        words.negations,
    )


@dataclass(slots=True)
class _Words:
    """What the words of one prompt say, read one word at a time."""

    numbers: list[str] = field(default_factory=list)
    tickers: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    polar: list[str] = field(default_factory=list)
    negations: int = 0

    def read(self, word: str) -> None:
        if not word:
            return
        lower = word.lower()
        if lower.endswith("n't"):
            self.negations += 1
            lower = lower[:-3]
        lower = lower.removesuffix("'s")
        symbol = _ticker(word) or _ASSETS.get(lower, "")
        if symbol:
            self.tickers.append(symbol)
        self.negations += lower in _NEGATIONS
        if lower in _WORD_NUMBERS:
            self.numbers.append(_format(float(_WORD_NUMBERS[lower]), ""))
        if lower in _DATE_WORDS or word in _DATE_WORDS:
            self.dates.append(_DATE_WORDS.get(lower) or _DATE_WORDS[word])
        if lower in _POLAR:
            self.polar.append(_POLAR[lower])


def _dates(text: str) -> tuple[list[str], str]:
    """Calendar dates and clock times, and the text without them (so their digits are not read as numbers)."""
    dates = ["date:" + "-".join(str(int(p)) for p in m.groups() if p is not None) for m in _ISO_DATE.finditer(text)]
    text = _ISO_DATE.sub(" ", text)
    dates += [f"time:{int(m.group(1))}:{m.group(2)}" for m in _TIME.finditer(text)]
    return dates, _TIME.sub(" ", text)


def check(prompt: str, cached_prompt: str) -> GuardVerdict:
    """Whether an answer cached for `cached_prompt` may answer `prompt`, as far as their facts go."""
    return compare(facts(prompt), facts(cached_prompt))


def compare(ours: Facts, theirs: Facts) -> GuardVerdict:
    """`check` on facts already read (the semantic cache reads each prompt once)."""
    for reason, same in (
        ("numbers", ours.numbers == theirs.numbers),
        ("tickers", ours.tickers == theirs.tickers),
        ("dates", ours.dates == theirs.dates),
        ("polar", ours.polar == theirs.polar),
        ("negation", ours.negations == theirs.negations),
    ):
        if not same:
            return GuardVerdict(False, reason)
    return GuardVerdict(True, "")


def _ticker(word: str) -> str:
    """An upper-case symbol (BTC, $AAPL, BTC/USD, BRK.B, ES1), else ""."""
    core = word.lstrip("$")
    if word.startswith("$") and core.isalpha():
        return core.upper()
    letters = core.replace("/", "").replace("-", "").replace(".", "")
    if not letters or not letters[0].isalpha() or not letters.isalnum() or len(letters) > 10:
        return ""
    if core.upper() != core or core in _NOT_TICKERS or not any(c.isalpha() for c in core):
        return ""
    for part in re.split(r"[/-]", core):
        if part.lower() in _ASSETS:
            core = core.replace(part, _ASSETS[part.lower()])
    return core


def _number(match: re.Match[str]) -> str:
    digits = match.group("digits").replace(",", "").replace("\u202f", "")
    value = float(digits)
    scale = (match.group("scale") or "").lower()
    value *= _SCALE.get(scale, 1.0)
    if match.group("sign") in ("-", "\u2212"):
        value = -value
    unit = _UNIT.get((match.group("unit") or "").lower(), "")
    if unit.startswith("basis"):
        unit = "bp"
    return _format(value, unit)


def _format(value: float, unit: str) -> str:
    return f"{value:.10g}{unit}"


def _distinct(values: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
