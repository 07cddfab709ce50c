"""The `sentiment` task: news and crypto headlines labelled bullish, bearish or neutral by people.

The headlines are the project's own file, `finetune/data/sentiment_headlines.jsonl`, shipped in
the package; every label was written by a person following docs/sentiment_labelling.md, never by
a model. Each line: {"prompt": headline, "label": "bullish"|"bearish"|"neutral",
"group": "equity"|"crypto"|"macro"}.

Splits are a function of the headline's text alone (a hash of its normalised form), so the same
headline, or two that differ only in case and spacing, never sit in two splits. One group, the
macro headlines, is held out: it appears only in `heldout`, to measure how the adapter reads a
kind of news it never saw in training.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

from finetune.examples import HELDOUT, TEST, TRAIN, VAL, Example

FILE_NAME = "sentiment_headlines.jsonl"
SOURCE = "finetune/data/sentiment_headlines.jsonl"
LABELS = ("bullish", "bearish", "neutral")
GROUPS = ("equity", "crypto", "macro")
HELDOUT_GROUP = "macro"
SYSTEM = "Answer with one word: bullish, bearish or neutral."
SHARES = {TRAIN: 0.6, VAL: 0.2, TEST: 0.2}  # of the groups that are not held out, by text hash
LABELLED_BY = (
    "people following docs/sentiment_labelling.md (one question: taken at face value, does the news more "
    "likely push the asset's price up or down in the near term?); never by a model"
)
SPLIT_RULE = (
    f"by the first 8 hex digits of sha256('sentiment:' + the headline lower-cased with its spacing collapsed): "
    f"< 0.6 train, < 0.8 val, else test; the '{HELDOUT_GROUP}' group is held out (heldout only); "
    "repeated headlines are kept once, and the same headline with two labels is an error"
)


class SentimentDataError(ValueError):
    """The headline file cannot be used as it is; the message names the line."""


def packaged_text() -> tuple[str, str]:
    """The packaged file's text and where it is (for messages)."""
    item = resources.files("finetune.data").joinpath(FILE_NAME)
    if not item.is_file():
        raise SentimentDataError(
            f"{SOURCE} is not there: the sentiment task reads the labelled headlines shipped with the package "
            "(see docs/sentiment_labelling.md)"
        )
    return item.read_text(encoding="utf-8"), str(item)


def normalise(text: str) -> str:
    return " ".join(text.lower().split())


def split_of(text: str, group: str) -> str:
    """The split a headline belongs to: its group (held out) or the hash of its normalised text."""
    if group == HELDOUT_GROUP:
        return HELDOUT
    digest = hashlib.sha256(f"sentiment:{normalise(text)}".encode()).hexdigest()
    bucket = int(digest[:8], 16) / 0x100000000
    if bucket < SHARES[TRAIN]:
        return TRAIN
    if bucket < SHARES[TRAIN] + SHARES[VAL]:
        return VAL
    return TEST


def read_headlines(text: str, where: str = SOURCE) -> list[Example]:
    """Every headline once, with its split; refuses unknown labels or groups and conflicting repeats."""
    examples: list[Example] = []
    seen: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SentimentDataError(f"{at}: not JSON: {exc}") from None
        headline, label, group = record.get("prompt"), record.get("label"), record.get("group")
        if not isinstance(headline, str) or not headline.strip():
            raise SentimentDataError(f"{at}: needs a non-empty 'prompt' (the headline)")
        if label not in LABELS:
            raise SentimentDataError(f"{at}: label {label!r} is not one of {', '.join(LABELS)}")
        if group not in GROUPS:
            raise SentimentDataError(f"{at}: group {group!r} is not one of {', '.join(GROUPS)}")
        key = normalise(headline)
        if key in seen:
            first_label, first_line = seen[key]
            if first_label != label:
                raise SentimentDataError(
                    f"{at}: the same headline as line {first_line} with another label ({label} vs {first_label})"
                )
            continue
        seen[key] = (label, number)
        headline = headline.strip()
        examples.append(Example(headline, label, split_of(headline, group), SOURCE, group))
    if not examples:
        raise SentimentDataError(f"{where}: no headlines")
    return examples


def load_headlines(path: Path | None = None) -> tuple[list[Example], str]:
    """The examples from `path`, or from the packaged file; with the sha256 of the text read."""
    if path is None:
        text, where = packaged_text()
    else:
        text, where = path.read_text(encoding="utf-8"), str(path)
    return read_headlines(text, where), hashlib.sha256(text.encode()).hexdigest()
