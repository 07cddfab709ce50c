"""The learning loop runs end to end (scripts/learning_loop.py --smoke): a real gateway escalates day 1 to a
teacher stand-in and captures it, `finetune --from-traffic` trains and publishes, the gateway serves the new
adapter without a restart, and day 2 goes through it. The smoke run learns nothing (6 steps); the figures of a
real run are in docs/finetune.md."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_loop_captures_retrains_and_serves_the_new_adapter(tmp_path: Path) -> None:
    command = [sys.executable, "scripts/learning_loop.py", "--smoke", "--day1", "40", "--day2", "20"]
    done = subprocess.run(
        [*command, "--workdir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    day1 = re.search(r"^\| day 1 \| 40 \| (\d+) \(\d+%\) \| (\d+) \|", out, re.MULTILINE)
    day2 = re.search(r"^\| day 2 \| 20 \| (\d+) \(\d+%\) \| (\d+) \|", out, re.MULTILINE)
    assert day1 and day2, out
    escalated_day1 = int(day1.group(1))
    assert escalated_day1 > 0  # the base model answers no headline with a label: they go to the teacher

    with sqlite3.connect(tmp_path / "learning.sqlite3") as db:  # what the gateway kept, read as data
        rows = [json.loads(raw) for (raw,) in db.execute("SELECT row FROM training_rows WHERE task = 'sentiment'")]
    assert len(rows) >= escalated_day1 and all(r["provider"] == "openai" for r in rows)
    assert {r["label"] for r in rows} <= {"bullish", "bearish", "neutral"}

    [published] = list((tmp_path / "adapters" / "sentiment").iterdir())
    card = json.loads((published / "card.json").read_text())
    assert card["data"]["rows_exported"] == escalated_day1  # trained on exactly the day-1 capture
    assert "never the adapter's own" in card["data"]["rule"]
    assert f"sentiment: {published}" in out  # published (no champion yet), then served for day 2
