"""The `sentiment` task: news and crypto headlines labelled bullish, bearish or neutral by people.

The headlines are the project's own file, `finetune/data/sentiment_headlines.jsonl`, shipped in
the package; every label was written by a person following docs/sentiment_labelling.md, never by
a model. Each line: {"prompt": headline, "label": "bullish"|"bearish"|"neutral",
"group": "equity"|"crypto"|"macro"|"unseen"}, and for the `unseen` group "entity": the token,
exchange or protocol the headline is about.

Splits are a function of the headline's text alone (a hash of its normalised form), so the same
headline, or two that differ only in case and spacing, never sit in two splits. Two groups are
held out: they appear only in `heldout`. The macro headlines measure how a model reads a kind of
news it never saw in training; the `unseen` headlines are crypto news about entities named nowhere
else in the file (a file where one is named outside its group is refused), which measures how a
model reads crypto news about tokens it never saw.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path

from finetune.examples import HELDOUT, TEST, TRAIN, VAL, Example

FILE_NAME = "sentiment_headlines.jsonl"
SOURCE = "finetune/data/sentiment_headlines.jsonl"
LABELS = ("bullish", "bearish", "neutral")
GROUPS = ("equity", "crypto", "macro", "unseen")
HELDOUT_GROUPS = ("macro", "unseen")
UNSEEN_GROUP = "unseen"  # crypto news about entities named nowhere else; each line names its "entity"
SYSTEM = "Answer with one word: bullish, bearish or neutral."
SHARES = {TRAIN: 0.6, VAL: 0.2, TEST: 0.2}  # of the groups that are not held out, by text hash
LABELLED_BY = (
    "people following docs/sentiment_labelling.md (one question: taken at face value, does the news more "
    "likely push the asset's price up or down in the near term?); never by a model"
)
SPLIT_RULE = (
    "by the first 8 hex digits of sha256('sentiment:' + the headline lower-cased with its spacing collapsed): "
    "< 0.6 train, < 0.8 val, else test; the 'macro' group and the 'unseen' group (crypto news about tokens, "
    "exchanges and protocols named in no other group) are held out (heldout only); repeated headlines are kept "
    "once, and the same headline with two labels is an error"
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
    if group in HELDOUT_GROUPS:
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
    entities: dict[str, int] = {}  # an unseen entity, lower-cased -> its first line
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{number}"
        record, headline, label, group = _fields(line, at)
        if group == UNSEEN_GROUP:
            entities.setdefault(_entity(record, headline, at), number)
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
    _check_unseen(examples, entities, where)
    return examples


def _fields(line: str, at: str) -> tuple[dict[str, object], str, str, str]:
    """A line's record, headline, label and group; refused when one is missing or unknown."""
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
    return record, headline, str(label), str(group)


def _entity(record: dict[str, object], headline: str, at: str) -> str:
    """The entity an unseen headline is about, lower-cased; refused when the line has none or does not name it."""
    entity = record.get("entity")
    if not isinstance(entity, str) or not _names(entity.strip(), headline):
        raise SentimentDataError(
            f"{at}: an '{UNSEEN_GROUP}' headline needs an 'entity' (the token, exchange or protocol) "
            "that the headline names"
        )
    return entity.strip().lower()


def _names(entity: str, headline: str) -> bool:
    """Whether `headline` names `entity` as a word of its own (case-insensitive)."""
    return bool(entity) and re.search(rf"(?<!\w){re.escape(entity)}(?!\w)", headline, re.IGNORECASE) is not None


def _check_unseen(examples: list[Example], entities: dict[str, int], where: str) -> None:
    """Refuses a file where an unseen entity is named by a headline of another group."""
    for entity, first in entities.items():
        for example in examples:
            if example.group != UNSEEN_GROUP and _names(entity, example.input):
                raise SentimentDataError(
                    f"{where}:{first}: the unseen entity {entity!r} is also named outside the '{UNSEEN_GROUP}' "
                    f"group ({example.input!r}, group {example.group})"
                )


def load_headlines(path: Path | None = None) -> tuple[list[Example], str]:
    """The examples from `path`, or from the packaged file; with the sha256 of the text read."""
    if path is None:
        text, where = packaged_text()
    else:
        text, where = path.read_text(encoding="utf-8"), str(path)
    return read_headlines(text, where), hashlib.sha256(text.encode()).hexdigest()
