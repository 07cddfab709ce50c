"""Datasets: the built-in tasks from real files, or any labelled JSONL a user brings.

A TaskDataset holds the examples of every split, the prompt template and a dataset card
(sources, date ranges, counts, label balance, and the split check's result).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetune.data import mmlu, sentiment
from finetune.data.price_tasks import PRICE_TASKS, PriceTask
from finetune.data.prices import PriceSeries, load_btc_hourly, load_sp500, load_stocks_daily
from finetune.data.sources import BTC_HOURLY, MMLU, SP500_DAILY, STOCKS_DAILY, DataStore, PackagedFile
from finetune.data.splits import DEFAULT_SPLITS, SourceSplits, check_splits
from finetune.examples import SPLITS, TEST, TRAIN, VAL, Example, PromptTemplate

BUILTIN_TASKS = (*PRICE_TASKS, "mmlu", "sentiment")


class DataError(ValueError):
    """The data cannot be used as given; the message says what to change."""


@dataclass(frozen=True, slots=True)
class BuildOptions:
    train_stride: int = 1  # every window in the training period (shuffled at training time)
    # val/test/heldout windows end on every bar, so every price task has at least 2,000 validation windows in
    # 2019-2020 to draw from (`--max-val 2000` for the guarantee's rows). The default draws 300: scoring 2,000
    # took most of a task's share of the 20-minute run (docs/finetune.md)
    eval_stride: int = 1
    max_examples: Mapping[str, int] = field(default_factory=lambda: {"val": 300, "test": 400, "heldout": 150})
    # MMLU prompts are ~3x longer than the price prompts: fewer of them keep evaluation in proportion
    mmlu_max_examples: Mapping[str, int] = field(default_factory=lambda: {"val": 100, "test": 160, "heldout": 80})
    seed: int = 0
    splits: Mapping[str, SourceSplits] = field(default_factory=lambda: dict(DEFAULT_SPLITS))  # picklable
    mmlu_max_chars: int = 600
    sentiment_file: Path | None = None  # None: the headlines shipped in the package


@dataclass(frozen=True, eq=False)
class TaskDataset:
    name: str
    labels: tuple[str, ...]
    template: PromptTemplate
    examples: tuple[Example, ...]
    card: Mapping[str, Any]

    def split(self, name: str) -> list[Example]:
        return [ex for ex in self.examples if ex.split == name]


# -- built-in tasks ------------------------------------------------------------------------


def load_prices(store: DataStore) -> list[PriceSeries]:
    return [
        *load_stocks_daily(store.path(STOCKS_DAILY)),
        *load_sp500(store.path(SP500_DAILY)),
        *load_btc_hourly(store.path(BTC_HOURLY)),
    ]


def price_examples(task: PriceTask, series: Iterable[PriceSeries], options: BuildOptions) -> list[Example]:
    """Every window of `task.span` consecutive bars that lies wholly inside one split."""
    examples: list[Example] = []
    for s in series:
        if s.interval not in task.intervals or s.source not in options.splits or len(s) < task.span:
            continue
        if task.sources and s.source not in task.sources:
            continue
        bars = np.column_stack([s.open, s.high, s.low, s.close]) if task.ohlc else s.close
        plan = options.splits[s.source]
        starts, ends = s.times[: len(s) - task.span + 1], s.times[task.span - 1 :]
        # a window has a gap when any step inside it is longer than max_gap: count gaps with a running sum
        gaps = np.concatenate([[0], np.cumsum(np.diff(s.times) > s.max_gap)])
        whole = gaps[task.span - 1 :] == gaps[: len(s) - task.span + 1]
        labels = plan.assign_many(s.symbol, starts, ends)
        times = s.times.astype(str)
        for begin, split in enumerate(labels):
            end = begin + task.span
            if split is None or not whole[begin]:
                continue
            stride = options.train_stride if split == TRAIN else (task.eval_stride or options.eval_stride)
            if end % stride:
                continue
            window = bars[begin:end]
            examples.append(
                Example(
                    task.encode(window), task.label(window), split, s.source, s.symbol, times[begin], times[end - 1]
                )
            )
    return examples


def balance_labels(examples: list[Example], labels: tuple[str, ...], ratio: float, seed: int) -> list[Example]:
    """Per split, each label capped at `ratio` times the count of the split's rarest label (the
    labels that occur there), drawn evenly at random; order kept."""
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    for split in SPLITS:
        items = [ex for ex in examples if ex.split == split]
        counts = Counter(ex.label for ex in items)
        present = [counts[label] for label in labels if counts[label]]
        if not present:
            continue
        cap = max(1, int(ratio * min(present)))
        keep: set[int] = set()
        for label in labels:
            where = [i for i, ex in enumerate(items) if ex.label == label]
            if len(where) > cap:
                where = rng.choice(where, cap, replace=False).tolist()
            keep.update(where)
        out.extend(items[i] for i in sorted(keep))
    return out


def build_task(name: str, store: DataStore, options: BuildOptions | None = None) -> TaskDataset:
    options = options or BuildOptions()
    if name == "mmlu":
        examples = _dedupe_text(mmlu.build_mmlu(store.path(MMLU), max_chars=options.mmlu_max_chars))
        template = PromptTemplate(mmlu.SYSTEM)
        labels: tuple[str, ...] = mmlu.LABELS
        extra: dict[str, Any] = {
            "rule": "the MMLU answer key",
            "input_format": "the question, then one line per option: 'A. ...'",
            "subjects": list(mmlu.SUBJECTS),
            "split_rule": "official validation -> val; official test by question hash: 70% train, 30% test; "
            f"dev -> train; subjects {list(mmlu.HELDOUT_SUBJECTS)} only in heldout (their test questions); "
            f"questions longer than {options.mmlu_max_chars} characters with options are left out",
        }
        files: tuple[PackagedFile, ...] = (MMLU,)
    elif name == "sentiment":
        try:
            examples, digest = sentiment.load_headlines(options.sentiment_file)
        except (sentiment.SentimentDataError, OSError) as exc:
            raise DataError(str(exc)) from None
        template = PromptTemplate(sentiment.SYSTEM)
        labels = sentiment.LABELS
        extra = {
            "rule": "the label people gave the headline following docs/sentiment_labelling.md (never a model)",
            "input_format": "the headline as written",
            "labelled_by": sentiment.LABELLED_BY,
            "data_file": {"path": sentiment.SOURCE, "sha256": digest},
            "groups": list(sentiment.GROUPS),
            "heldout_groups": list(sentiment.HELDOUT_GROUPS),  # reported one by one beside the whole split
            "split_rule": sentiment.SPLIT_RULE,
        }
        files = ()
    elif name in PRICE_TASKS:
        task = PRICE_TASKS[name]
        examples = price_examples(task, load_prices(store), options)
        problems = check_splits(examples, options.splits)
        if problems:
            raise DataError(f"{name}: the split check failed: {problems[:5]}")
        checked = len(examples)
        if task.balance:
            examples = balance_labels(examples, task.labels, task.balance, options.seed)
        template = PromptTemplate(task.system)
        labels = task.labels
        files = (STOCKS_DAILY, SP500_DAILY, BTC_HOURLY) if "1h" in task.intervals else (STOCKS_DAILY, SP500_DAILY)
        if task.sources:
            files = tuple(f for f in files if f.key in task.sources)
        extra = {
            "rule": task.rule,
            "input_format": task.input_format,
            "bars_per_example": task.span,
            "split_plan": {
                src: plan.describe() for src, plan in options.splits.items() if not task.sources or src in task.sources
            },
            "split_check": {"checked": checked, "problems": 0},
        }
        if task.eval_stride:
            extra["eval_stride"] = task.eval_stride
    else:
        raise DataError(f"unknown task '{name}'; built-in tasks: {', '.join(BUILTIN_TASKS)} (or pass --data FILE)")
    caps = options.mmlu_max_examples if name == "mmlu" else options.max_examples
    examples = _cap(examples, caps, options.seed)
    card = dataset_card(name, labels, template, examples, files, extra)
    return TaskDataset(name, labels, template, tuple(examples), card)


def _cap(examples: list[Example], caps: Mapping[str, int], seed: int) -> list[Example]:
    """At most caps[split] examples per split, drawn evenly at random (order kept)."""
    rng = np.random.default_rng(seed)
    out: list[Example] = []
    for split in SPLITS:
        items = [ex for ex in examples if ex.split == split]
        cap = caps.get(split)
        if cap is not None and len(items) > cap:
            keep = sorted(rng.choice(len(items), cap, replace=False).tolist())
            items = [items[i] for i in keep]
        out.extend(items)
    return out


def _dedupe_text(examples: list[Example]) -> list[Example]:
    """Drop evaluation examples whose text also appears in training."""
    seen = {ex.input for ex in examples if ex.split == TRAIN}
    return [ex for ex in examples if ex.split == TRAIN or ex.input not in seen]


# -- user data -------------------------------------------------------------------------------


def load_jsonl_task(
    path: Path, name: str, *, labels: tuple[str, ...] = (), system: str = "", seed: int = 0
) -> TaskDataset:
    """A task from labelled JSONL: a file, or a folder with train/val/test(/heldout).jsonl.

    Each line is {"prompt": ..., "label": ...} ("completion" or "answer" also name the label),
    or {"messages": [...], "label": ...}, or {"messages": [..., {"role": "assistant", "content": LABEL}]}.
    Lines may carry "split"; a single file without splits is divided 70/15/15 by a hash of the input.
    """
    files = [path] if path.is_file() else [path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").is_file()]
    if not files:
        raise DataError(
            f"{path}: no JSONL file; give a .jsonl file or a folder with train.jsonl, val.jsonl, test.jsonl"
        )
    examples: list[Example] = []
    for file in files:
        default_split = file.stem if file.stem in SPLITS else ""
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if line.strip():
                examples.append(_parse_line(line, f"{file}:{number}", default_split))
    found = tuple(sorted({ex.label for ex in examples}))
    labels = labels or found
    unknown = set(found) - set(labels)
    if unknown:
        raise DataError(f"{path}: labels {sorted(unknown)} are not in --labels {list(labels)}")
    systems = Counter(ex.system for ex in examples if ex.system)
    template = PromptTemplate(system or (systems.most_common(1)[0][0] if systems else ""))
    examples = [_with_split(ex, seed) for ex in examples]
    if not any(ex.split == TRAIN for ex in examples) or not any(ex.split == VAL for ex in examples):
        raise DataError(f"{path}: needs train and val examples (val fits the calibration and the threshold)")
    extra = {"rule": "labels as given in the file", "input_format": "as given", "files": [str(f) for f in files]}
    card = dataset_card(name, labels, template, examples, (), extra)
    return TaskDataset(name, labels, template, tuple(examples), card)


def _parse_line(line: str, where: str, default_split: str) -> Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: not JSON: {exc}") from None
    label = record.get("label", record.get("completion", record.get("answer")))
    system: str | None = record.get("system")
    if "messages" in record:
        messages = list(record["messages"])
        if label is None and messages and messages[-1].get("role") == "assistant":
            label = messages.pop()["content"]
        system = next((m["content"] for m in messages if m.get("role") == "system"), system)
        users = [m["content"] for m in messages if m.get("role") == "user"]
        if len(users) != 1:
            raise DataError(f"{where}: expected exactly one user message, found {len(users)}")
        text = users[0]
    elif "prompt" in record:
        text = record["prompt"]
    else:
        raise DataError(f"{where}: needs 'prompt' or 'messages'")
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{where}: needs a non-empty 'label' (or 'completion', 'answer', or a last assistant message)")
    split = record.get("split", default_split)
    if split and split not in SPLITS:
        raise DataError(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
    return Example(text, label.strip(), split, "jsonl", record.get("group", ""), system=system)


def _with_split(ex: Example, seed: int) -> Example:
    if ex.split:
        return ex
    bucket = int(hashlib.sha256(f"{seed}:{ex.input}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    split = TRAIN if bucket < 0.7 else VAL if bucket < 0.85 else TEST
    return Example(ex.input, ex.label, split, ex.source, ex.group, system=ex.system)


# -- dataset card --------------------------------------------------------------------------


def dataset_card(
    name: str,
    labels: tuple[str, ...],
    template: PromptTemplate,
    examples: list[Example],
    files: tuple[PackagedFile, ...],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    splits: dict[str, Any] = {}
    for split in SPLITS:
        items = [ex for ex in examples if ex.split == split]
        if not items:
            continue
        balance = Counter(ex.label for ex in items)
        entry: dict[str, Any] = {
            "count": len(items),
            "labels": {label: balance.get(label, 0) for label in labels},
            "groups": sorted({ex.group for ex in items if ex.group}),
        }
        ranges: dict[str, list[str]] = {}
        for source in sorted({ex.source for ex in items if ex.start}):
            spans = [ex for ex in items if ex.source == source]
            ranges[source] = [min(ex.start for ex in spans), max(ex.end for ex in spans)]
        if ranges:
            entry["date_ranges"] = ranges
        splits[split] = entry
    return {
        "task": name,
        "labels": list(labels),
        "prompt": {"system": template.system, "user": template.user},
        "sources": [{"key": f.key, "package": f.pin, "license": f.license} for f in files],
        **extra,
        "splits": splits,
    }


def write_dataset(dataset: TaskDataset, folder: Path) -> None:
    """JSONL per split (chat messages + label + provenance), card.json and a README.md."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        items = dataset.split(split)
        if not items:
            continue
        with (folder / f"{split}.jsonl").open("w") as handle:
            for ex in items:
                template = PromptTemplate(ex.system) if ex.system is not None else dataset.template
                record = {
                    "messages": list(template.messages(ex.input)),
                    "label": ex.label,
                    "split": ex.split,
                    "source": ex.source,
                    "group": ex.group,
                    "start": ex.start,
                    "end": ex.end,
                }
                handle.write(json.dumps(record) + "\n")
    (folder / "card.json").write_text(json.dumps(dataset.card, indent=2) + "\n")
    (folder / "README.md").write_text(dataset_card_markdown(dataset.card))


def dataset_card_markdown(card: Mapping[str, Any]) -> str:
    lines = [f"# Dataset card: {card['task']}", ""]
    lines += [f"- Labels: {', '.join(card['labels'])}", f"- Label rule: {card.get('rule', '')}"]
    lines += [f"- Input: {card.get('input_format', '')}", f"- System prompt: `{card['prompt']['system']}`"]
    for source in card.get("sources", []):
        lines.append(f"- Source: {source['key']} from `{source['package']}` ({source['license']})")
    if "labelled_by" in card:
        lines.append(f"- Labelled by: {card['labelled_by']}")
    if "data_file" in card:
        lines.append(f"- Data file: `{card['data_file']['path']}` (sha256 {card['data_file']['sha256']})")
    if "split_rule" in card:
        lines.append(f"- Splits: {card['split_rule']}")
    if "split_check" in card:
        check = card["split_check"]
        lines.append(f"- Split check: {check['checked']} examples, {check['problems']} crossing a boundary")
    lines += ["", "| split | count | label balance | groups | date ranges |", "|---|---|---|---|---|"]
    for split, entry in card["splits"].items():
        balance = ", ".join(f"{k} {v}" for k, v in entry["labels"].items())
        ranges = "; ".join(f"{src}: {a[:10]}..{b[:10]}" for src, (a, b) in entry.get("date_ranges", {}).items())
        lines.append(f"| {split} | {entry['count']} | {balance} | {', '.join(entry['groups'])} | {ranges} |")
    return "\n".join(lines) + "\n"
