"""Training data from the gateway's own traffic: the rows `python -m gateway learn export` writes.

The gateway keeps, for tasks with `learn = true`, each escalated request with the label
the remote tier answered (the teacher), and a sample of confident local answers the audit
checked. This module reaches them only through that documented export, run as a separate
process, never by importing the gateway's internals. The rows are:

- filtered to the task's label set (a remote answer that named no label teaches nothing);
- deduplicated by prompt, the newest label winning (the teacher's latest word);
- split by time: the oldest 70 % train, the next 15 % validation, the newest 15 % test, so
  the threshold is fitted and the adapter judged on traffic newer than it learned from;
- optionally mixed with the task's seed data, in the train split only.

The labels come from the remote tier, never from the adapter being evaluated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from finetune.data.datasets import DataError, TaskDataset, dataset_card
from finetune.examples import TEST, TRAIN, VAL, Example, PromptTemplate

TRAIN_SHARE, VAL_SHARE = 0.70, 0.15
MIN_ROWS = 20  # fewer is no dataset: a handful of validation rows cannot fit a threshold


def export_rows(task: str, out: Path, *, gateway_config: Path | None, python: str = sys.executable) -> Path:
    """`python -m gateway learn export --task T --out FILE [--config C]`, in its own process."""
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [python, "-m", "gateway", "learn", "export", "--task", task, "--out", str(out)]
    if gateway_config is not None:
        command += ["--config", str(gateway_config)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise DataError(
            f"{task}: exporting the gateway's training rows failed ({why}); check --gateway-config points at "
            "the gateway's config file, or run `python -m gateway learn export` yourself and pass --data"
        )
    return out


def traffic_task(
    path: Path,
    name: str,
    *,
    labels: tuple[str, ...],
    system: str = "",
    seed_examples: Sequence[Example] = (),
) -> TaskDataset:
    """The task's dataset from exported rows (see the module's rules)."""
    rows = [_parse(line, f"{path}:{n}") for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    found = sorted({row["label"] for row in rows})
    labels = labels or tuple(found)
    usable = [row for row in rows if row["label"] in labels]
    newest: dict[str, dict[str, Any]] = {}
    for row in sorted(usable, key=lambda r: r["ts"]):
        newest[row["prompt"]] = row  # a later label for the same prompt replaces the earlier one
    ordered = sorted(newest.values(), key=lambda r: r["ts"])
    if len(ordered) < MIN_ROWS:
        raise DataError(
            f"{name}: {len(ordered)} usable training rows (of {len(rows)} exported; labels {list(labels)}); "
            f"at least {MIN_ROWS} are needed: let the gateway capture more, or add --with-seed"
        )
    n_train = round(TRAIN_SHARE * len(ordered))
    n_val = round(VAL_SHARE * len(ordered))
    examples = [
        Example(
            row["prompt"], row["label"], _split(i, n_train, n_val), "traffic", row["provider"], row["when"], row["when"]
        )
        for i, row in enumerate(ordered)
    ]
    examples += [replace(ex, split=TRAIN) for ex in seed_examples if ex.label in labels]
    systems = [row["system"] for row in ordered if row["system"]]
    template = PromptTemplate(system or (max(set(systems), key=systems.count) if systems else ""))
    extra = {
        "rule": "labels are the remote tier's answers to escalated or audited requests, mapped to the label set "
        "(the teacher); never the adapter's own",
        "input_format": "the request's user message as the gateway received it",
        "split_rule": f"by time: oldest {TRAIN_SHARE:.0%} train, next {VAL_SHARE:.0%} val, newest rest test",
        "rows_exported": len(rows),
        "rows_without_a_label": len(rows) - len(usable),
        "duplicates_dropped": len(usable) - len(ordered),
        "seed_examples": sum(1 for ex in seed_examples if ex.label in labels),
        "from": ordered[0]["when"],
        "to": ordered[-1]["when"],
        "files": [str(path)],
    }
    card = dataset_card(name, labels, template, examples, (), extra)
    return TaskDataset(name, labels, template, tuple(examples), card)


def _split(i: int, n_train: int, n_val: int) -> str:
    return TRAIN if i < n_train else VAL if i < n_train + n_val else TEST


def _parse(line: str, where: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
        messages = record["messages"]
        users = [m["content"] for m in messages if m.get("role") == "user"]
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        ts = float(record["ts"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{where}: not a row of `gateway learn export` ({type(exc).__name__}: {exc})") from None
    if not users:
        raise DataError(f"{where}: the row has no user message")
    return {
        "prompt": users[-1],
        "label": str(record.get("label", "")).strip(),
        "system": system,
        "ts": ts,
        "when": datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "provider": str(record.get("provider", "")),
    }
