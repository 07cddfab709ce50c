"""The `sentiment` task: headlines labelled by people, split by a hash of their text with the
macro group and the unseen-entity group held out, refused when a line is wrong; the label words
pass the first-token rule."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from finetune.data import sentiment
from finetune.data.datasets import BUILTIN_TASKS, BuildOptions, DataError, TaskDataset, build_task, write_dataset
from finetune.data.sources import DataStore
from finetune.examples import HELDOUT, SPLITS, TEST, TRAIN, VAL, Example, PromptTemplate

CACHE = Path.home() / ".cache" / "trading-gateway"
WORDS = {
    "bullish": ["beats estimates", "raises guidance", "wins contract", "jumps 9%", "ETF approved"],
    "bearish": ["misses estimates", "cuts guidance", "loses contract", "slides 6%", "exchange hacked"],
    "neutral": ["sets earnings date", "names new director", "moves office", "holds meeting", "updates website"],
}
GROUP_NAMES = {"equity": "Corrowan Foods", "crypto": "Solara token", "macro": "Central bank"}


def fixture_lines(repeat: int = 8) -> list[dict[str, str]]:
    lines = []
    for group, name in GROUP_NAMES.items():
        for label, phrases in WORDS.items():
            for phrase in phrases:
                for i in range(repeat):
                    lines.append({"prompt": f"{name} {phrase} in week {i}", "label": label, "group": group})
    return lines


def write_lines(path: Path, lines: list[dict[str, str]], extra: str = "") -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + extra)
    return path


@pytest.fixture
def headlines(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "headlines.jsonl", fixture_lines())


def build(path: Path) -> TaskDataset:
    return build_task("sentiment", DataStore(CACHE), BuildOptions(sentiment_file=path, max_examples={}))


def test_sentiment_is_a_builtin_task_with_its_system_prompt(headlines: Path) -> None:
    assert "sentiment" in BUILTIN_TASKS
    data = build_task("sentiment", DataStore(CACHE), BuildOptions(sentiment_file=headlines, max_examples={}))
    assert data.labels == ("bullish", "bearish", "neutral")
    assert data.template == PromptTemplate("Answer with one word: bullish, bearish or neutral.")
    assert len(data.examples) == 3 * 15 * 8
    card = data.card
    assert "never by a model" in card["labelled_by"] and "docs/sentiment_labelling.md" in card["labelled_by"]
    assert "'macro' group and the 'unseen' group" in card["split_rule"] and "are held out" in card["split_rule"]
    assert card["heldout_groups"] == ["macro", "unseen"]
    assert card["data_file"]["path"] == "finetune/data/sentiment_headlines.jsonl"
    assert len(card["data_file"]["sha256"]) == 64


def test_splits_follow_the_text_hash_and_hold_out_macro(headlines: Path) -> None:
    data = build_task("sentiment", DataStore(CACHE), BuildOptions(sentiment_file=headlines, max_examples={}))
    by_split = {split: data.split(split) for split in SPLITS}
    assert {ex.group for ex in by_split[HELDOUT]} == {"macro"} and len(by_split[HELDOUT]) == 120
    assert "macro" not in {ex.group for split in (TRAIN, VAL, TEST) for ex in by_split[split]}
    # 240 equity and crypto headlines: roughly 60/20/20
    sizes = {split: len(by_split[split]) for split in (TRAIN, VAL, TEST)}
    assert 110 < sizes[TRAIN] < 175 and 25 < sizes[VAL] < 75 and 25 < sizes[TEST] < 75, sizes
    for split in (TRAIN, VAL, TEST):
        assert set(Counter(ex.label for ex in by_split[split])) == set(sentiment.LABELS)
    # the split is a function of the text alone: the same headline in other case and spacing lands alike
    for ex in data.examples:
        assert sentiment.split_of(f"  {ex.input.upper()} ", ex.group) == ex.split


def test_a_repeated_headline_is_kept_once_and_never_in_two_splits(tmp_path: Path) -> None:
    lines = fixture_lines(2)
    repeats = [{**line, "prompt": "  " + line["prompt"].upper()} for line in lines if line["group"] != "macro"]
    data = build_task(
        "sentiment",
        DataStore(CACHE),
        BuildOptions(sentiment_file=write_lines(tmp_path / "h.jsonl", lines + repeats), max_examples={}),
    )
    texts = [sentiment.normalise(ex.input) for ex in data.examples]
    assert len(texts) == len(set(texts)) == len(lines)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "Solara token rallies", "label": "positive", "group": "crypto"}, "label 'positive'"),
        ({"prompt": "Solara token rallies", "label": "bullish", "group": "forex"}, "group 'forex'"),
        ({"prompt": "", "label": "bullish", "group": "crypto"}, "non-empty 'prompt'"),
        ({"prompt": "corrowan foods  BEATS estimates in week 0", "label": "bearish", "group": "equity"}, "line 1"),
    ],
)
def test_a_wrong_line_is_refused_with_its_line_number(tmp_path: Path, bad: dict[str, str], message: str) -> None:
    lines = fixture_lines(1)
    path = write_lines(tmp_path / "h.jsonl", lines, json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=rf"h\.jsonl:{len(lines) + 1}: .*{message}"):
        build(path)


def test_a_missing_file_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.jsonl"):
        build(tmp_path / "missing.jsonl")


def test_the_dataset_card_says_who_labelled(headlines: Path, tmp_path: Path) -> None:
    data = build_task("sentiment", DataStore(CACHE), BuildOptions(sentiment_file=headlines, max_examples={}))
    write_dataset(data, tmp_path / "out")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "Labelled by: people following docs/sentiment_labelling.md" in readme
    assert "never by a model" in readme and "held out" in readme
    record = json.loads((tmp_path / "out" / "heldout.jsonl").read_text().splitlines()[0])
    assert record["group"] == "macro" and record["messages"][0]["content"] == sentiment.SYSTEM


def test_the_three_labels_start_with_different_tokens() -> None:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from finetune.tokens import ChatEncoder

    folder = CACHE / "models" / "smollm2-135m-instruct"
    if not folder.is_dir():
        pytest.skip("the embedded model is not in the cache")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = ChatEncoder(tokenizer, PromptTemplate(sentiment.SYSTEM), sentiment.LABELS)
    firsts = {tokenizer.decode([encoder.encode(Example("x", label)).answer[0]]) for label in sentiment.LABELS}
    assert firsts == {"bull", "bear", "neutral"}


@pytest.mark.skipif(
    not (Path(sentiment.__file__).parent / sentiment.FILE_NAME).is_file(), reason="the headline file is not there yet"
)
def test_the_packaged_headlines_build() -> None:
    data = build_task("sentiment", DataStore(CACHE))
    assert data.split(TRAIN) and data.split(VAL) and data.split(TEST) and data.split(HELDOUT)
    for split in SPLITS:
        assert {ex.label for ex in data.split(split)} <= set(sentiment.LABELS)
    texts = {split: {sentiment.normalise(ex.input) for ex in data.split(split)} for split in SPLITS}
    assert all(not texts[a] & texts[b] for a in SPLITS for b in SPLITS if a < b)


def unseen_line(prompt: str, entity: str, label: str = "bearish") -> dict[str, str]:
    return {"prompt": prompt, "label": label, "group": "unseen", "entity": entity}


def test_unseen_entities_are_held_out(tmp_path: Path) -> None:
    lines = [
        *fixture_lines(1),
        unseen_line("Zarvik exchange hacked for $40 million", "Zarvik"),
        unseen_line("Zarvik token ZRV lists on three exchanges", "Zarvik", "bullish"),
    ]
    data = build(write_lines(tmp_path / "h.jsonl", lines))
    unseen = [ex for ex in data.examples if ex.group == "unseen"]
    assert len(unseen) == 2 and {ex.split for ex in unseen} == {HELDOUT}
    assert {ex.group for ex in data.split(HELDOUT)} == {"macro", "unseen"}


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "Zarvik exchange hacked", "label": "bearish", "group": "unseen"}, "needs an 'entity'"),
        (unseen_line("Zarvik exchange hacked", "Pellow"), "needs an 'entity'"),
        (unseen_line("Zarvikon exchange hacked", "Zarvik"), "needs an 'entity'"),  # a word of its own
    ],
)
def test_an_unseen_line_must_name_its_entity(tmp_path: Path, bad: dict[str, str], message: str) -> None:
    lines = fixture_lines(1)
    with pytest.raises(DataError, match=rf"h\.jsonl:{len(lines) + 1}: .*{message}"):
        build(write_lines(tmp_path / "h.jsonl", lines, json.dumps(bad) + "\n"))


def test_an_unseen_entity_named_in_another_group_is_refused(tmp_path: Path) -> None:
    lines = [
        unseen_line("Zarvik exchange hacked for $40 million", "Zarvik"),
        *fixture_lines(1),
        {"prompt": "Bitcoin slides as ZARVIK halts withdrawals", "label": "bearish", "group": "crypto"},
    ]
    with pytest.raises(DataError, match=r"h\.jsonl:1: the unseen entity 'zarvik' is also named outside"):
        build(write_lines(tmp_path / "h.jsonl", lines))
    # a longer word that merely contains the name is another name
    lines[-1] = {"prompt": "Bitcoin slides as Zarvikson halts withdrawals", "label": "bearish", "group": "crypto"}
    assert len(build(write_lines(tmp_path / "h.jsonl", lines)).split(HELDOUT)) == len(fixture_lines(1)) // 3 + 1


@pytest.mark.skipif(
    not (Path(sentiment.__file__).parent / sentiment.FILE_NAME).is_file(), reason="the headline file is not there yet"
)
def test_the_packaged_file_has_the_crypto_rows_the_guarantee_needs() -> None:
    examples, _ = sentiment.load_headlines()
    counts = Counter((ex.group, ex.label) for ex in examples)
    for group, least in (("crypto", 170), ("unseen", 83)):  # >= 520 crypto, >= 250 unseen, balanced labels
        assert all(counts[group, label] >= least for label in sentiment.LABELS), counts
    unseen = [ex for ex in examples if ex.group == "unseen"]
    assert {ex.split for ex in unseen} == {HELDOUT}
    crypto_splits = Counter(ex.split for ex in examples if ex.group == "crypto")
    assert crypto_splits[VAL] >= 80 and crypto_splits[TEST] >= 80, crypto_splits
