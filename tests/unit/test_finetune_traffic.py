"""Training from the gateway's traffic: the export as finetune reaches it, the time split, and the
champion-challenger rule (a run from traffic publishes only an adapter that keeps more of the newest
requests at the target accuracy than the one being served)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from finetune.data.datasets import DataError
from finetune.data.traffic import export_rows, traffic_task
from finetune.evaluate.rivalry import Rivalry, Standing
from finetune.examples import TEST, TRAIN, VAL, Example
from gateway.state.learning.sqlite import SqliteTrainingStore
from gateway.state.learning.store import TrainingRow

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_000_000.0
LABELS = ("bullish", "bearish", "neutral")


def line(i: int, prompt: str, label: str, ts: float) -> str:
    messages = [{"role": "system", "content": "One word."}, {"role": "user", "content": prompt}]
    return json.dumps({"messages": messages, "label": label, "ts": ts, "provider": "openai", "model": "m"})


def write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_split_by_time_newest_last_deduplicated_and_filtered(tmp_path: Path) -> None:
    lines = [line(i, f"headline {i}", LABELS[i % 3], T0 + 100 - i) for i in range(40)]  # written newest first
    lines.append(line(99, "headline 5", "neutral", T0 + 500))  # a newer label for a repeated prompt wins
    lines.append(line(98, "a remote answer with no label", "The market is uncertain.", T0 + 50))
    dataset = traffic_task(write(tmp_path, lines), "sentiment", labels=LABELS)
    by_split = {s: dataset.split(s) for s in (TRAIN, VAL, TEST)}
    assert [len(by_split[s]) for s in (TRAIN, VAL, TEST)] == [28, 6, 6]
    newest_train = max(ex.end for ex in by_split[TRAIN])
    assert all(ex.end >= newest_train for ex in by_split[VAL] + by_split[TEST])  # validation and test are newer
    assert max(ex.end for ex in by_split[VAL]) <= min(ex.end for ex in by_split[TEST])
    [five] = [ex for ex in dataset.examples if ex.input == "headline 5"]
    assert five.label == "neutral" and five.split == TEST  # its newest row, and so the newest split
    card = dataset.card
    assert card["rows_exported"] == 42 and card["rows_without_a_label"] == 1 and card["duplicates_dropped"] == 1
    assert "never the adapter's own" in card["rule"] and dataset.template.system == "One word."


def test_seed_data_joins_the_train_split_only_and_too_few_rows_is_refused(tmp_path: Path) -> None:
    lines = [line(i, f"h{i}", LABELS[i % 3], T0 + i) for i in range(20)]
    seed = [Example(f"seed {i}", "bullish", VAL) for i in range(5)] + [Example("off-label", "up", TRAIN)]
    dataset = traffic_task(write(tmp_path, lines), "sentiment", labels=LABELS, seed_examples=seed)
    assert sorted(ex.input for ex in dataset.split(TRAIN) if ex.input.startswith("seed")) == [
        f"seed {i}" for i in range(5)
    ]
    assert all(ex.input != "off-label" for ex in dataset.examples)
    with pytest.raises(DataError, match=r"19 usable training rows .* at least 20"):
        traffic_task(write(tmp_path, lines[:19]), "sentiment", labels=LABELS)
    with pytest.raises(DataError, match=r"rows\.jsonl:1: not a row of `gateway learn export`"):
        traffic_task(write(tmp_path, ['{"prompt": "x"}']), "sentiment", labels=LABELS)


def test_the_export_runs_the_gateway_command_against_its_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def capture() -> None:
        store = SqliteTrainingStore(tmp_path / "training.sqlite3")
        rows = [
            TrainingRow(
                T0 + i,
                "sentiment",
                f"r{i}",
                "",
                (("user", f"h{i}"),),
                "Bullish",
                "bullish",
                "openai",
                "m",
                "low_confidence",
                "neutral",
                0.4,
            )
            for i in range(3)
        ]
        await store.add(rows)
        await store.aclose()

    asyncio.run(capture())
    config = tmp_path / "gateway.toml"
    config.write_text('[tasks.sentiment]\nlabels = ["bullish", "bearish", "neutral"]\nlearn = true\n')
    monkeypatch.setenv("GATEWAY__STATE_DIR", str(tmp_path))
    out = export_rows("sentiment", tmp_path / "out" / "sentiment.jsonl", gateway_config=config)
    exported = [json.loads(x) for x in out.read_text().splitlines()]
    assert [(r["messages"][-1]["content"], r["label"]) for r in exported] == [(f"h{i}", "bullish") for i in range(3)]
    with pytest.raises(DataError, match=r"exporting the gateway's training rows failed .* --gateway-config"):
        export_rows("sentiment", tmp_path / "x.jsonl", gateway_config=tmp_path / "missing.toml")


def test_the_challenger_must_keep_more_than_the_champion() -> None:
    challenger = Standing("challenger", 0.9, 0.60, 0.96)
    assert Rivalry(0.95, 50, challenger, None).challenger_wins  # nothing served yet
    assert Rivalry(0.95, 50, challenger, Standing("v1", 0.88, 0.40, 0.95)).challenger_wins
    tie = Rivalry(0.95, 50, challenger, Standing("v1", 0.92, 0.60, 0.97))
    assert not tie.challenger_wins and "NOT published" in tie.line("sentiment")
    table = tie.markdown()
    assert "| challenger | 0.900 | 60% | 0.960 |" in table and "| v1 | 0.920 | 60% | 0.970 |" in table


def test_a_run_from_traffic_publishes_first_then_only_a_challenger_that_beats_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    from finetune.__main__ import options_from, parser
    from finetune.task_run import run_task
    from finetune.train.distributed import make_accelerator

    headlines = [
        json.loads(x) for x in (ROOT / "finetune" / "data" / "sentiment_headlines.jsonl").read_text().splitlines()
    ]

    async def capture() -> None:  # what the gateway kept: the teacher's labels for 60 headlines
        store = SqliteTrainingStore(tmp_path / "training.sqlite3")
        await store.add(
            [
                TrainingRow(
                    T0 + i,
                    "sentiment",
                    f"r{i}",
                    "",
                    (("user", h["prompt"]),),
                    h["label"],
                    h["label"],
                    "openai",
                    "m",
                    "low_confidence",
                    "neutral",
                    0.4,
                )
                for i, h in enumerate(headlines[::6])
            ]
        )
        await store.aclose()

    asyncio.run(capture())
    config = tmp_path / "gateway.toml"
    config.write_text('[tasks.sentiment]\nlabels = ["bullish", "bearish", "neutral"]\nlearn = true\n')
    monkeypatch.setenv("GATEWAY__STATE_DIR", str(tmp_path))
    artifacts = tmp_path / "artifacts"
    argv = ["--smoke", "--from-traffic", "--tasks", "sentiment", "--gateway-config", str(config)]
    args = parser().parse_args([*argv, "--artifacts", str(artifacts), "--no-progress"])
    _, options, budget, _ = options_from(args, {"HOME": str(Path.home())})

    def run(name: str) -> Any:
        return run_task("sentiment", options, budget, artifacts / "runs" / name, make_accelerator())

    first = run("first")
    assert first.adapter_dir is not None  # nothing was served: the first one is published
    assert first.summary.evaluation.task == "sentiment"
    assert "## Champion and challenger" in first.report_path.read_text()
    second = run("second")  # the same data and seed: the same adapter, so no better than the champion
    report = second.report_path.read_text()
    assert f"| {first.summary.version} |" in report and "| challenger |" in report
    assert second.adapter_dir is None and (artifacts / "runs" / "second" / "sentiment" / "challenger").is_dir()
    assert [p.name for p in (artifacts / "adapters" / "sentiment").iterdir()] == [first.summary.version]
