"""Capture of training rows: which answers are kept (remote answers of learning tasks only), what a row
holds, and the `learn` commands over the store."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app.learning import Learning
from gateway.config import Config, LearningConfig, RoutingConfig, TaskConfig
from gateway.core.contracts import Message, Privacy, Request, Role, Tier
from gateway.observe.metrics import Metrics
from gateway.observe.training_recorder import TrainingRecorder
from gateway.routing.recording_router import RecordingRouter
from gateway.routing.router import Router
from gateway.routing.tasks import ChainedTasks, ConfigTasks
from gateway.state.learning.sqlite import SqliteTrainingStore
from gateway.state.learning.store import TrainingRow
from gateway.state.open import open_state
from tests.unit.test_router import ScriptedLocal, ScriptedRemote

ROOT = Path(__file__).resolve().parents[2]
TASKS = {
    "trend": TaskConfig(labels=("up", "down"), min_confidence=0.7, learn=True),
    "summary": TaskConfig(),  # not learning
}
NOW = 1_795_000_000.0


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteTrainingStore]:
    opened = SqliteTrainingStore(tmp_path / "training.sqlite3")
    yield opened
    await opened.aclose()


def gateway(local: ScriptedLocal, store: SqliteTrainingStore) -> tuple[RecordingRouter, TrainingRecorder]:
    tasks = ChainedTasks(ConfigTasks(TASKS))
    router = Router(local, tasks, RoutingConfig(), remote=ScriptedRemote())  # type: ignore[arg-type]
    recorder = TrainingRecorder(store, tasks, {"trend"}, max_rows=100, max_age_days=30, wall=lambda: NOW)
    recorder.start()
    return RecordingRouter(router, on_answer=[recorder.record]), recorder


def ask(task: str, **fields: object) -> Request:
    return Request("r1", (Message(Role.USER, "Closes rose 10 days. Trend?"),), 4, task=task, **fields)  # type: ignore[arg-type]


async def test_an_escalated_answer_of_a_learning_task_is_kept_with_what_the_local_tier_said(
    store: SqliteTrainingStore,
) -> None:
    answerer, recorder = gateway(ScriptedLocal(prob=0.6), store)
    result = await answerer.generate(ask("trend", tags={"client_id": "desk-7"}))
    await recorder.aclose()
    assert result.tier is Tier.REMOTE
    [row] = await store.rows("trend")
    assert row == TrainingRow(
        ts=NOW,
        task="trend",
        request_id="r1",
        client_id="desk-7",
        messages=(("user", "Closes rose 10 days. Trend?"),),
        answer="down",
        label="down",
        provider="anthropic",
        model="big",
        escalation="low_confidence",
        local_answer="up",
        local_confidence=pytest.approx(0.6),  # type: ignore[arg-type]
    )


async def test_nothing_is_kept_that_stayed_local_opted_out_or_belongs_to_another_task(
    store: SqliteTrainingStore,
) -> None:
    unsure, unsure_recorder = gateway(ScriptedLocal(prob=0.6), store)
    local_only = await unsure.generate(ask("trend", privacy=Privacy.LOCAL_ONLY))
    opted_out = await unsure.generate(ask("trend", tags={"learn": "False"}))
    other_task = await unsure.generate(ask("summary", min_confidence=1.0))
    sure, sure_recorder = gateway(ScriptedLocal(prob=0.95), store)
    confident = await sure.generate(ask("trend"))
    await unsure_recorder.aclose()
    await sure_recorder.aclose()
    assert local_only.tier is Tier.LOCAL and confident.tier is Tier.LOCAL
    assert opted_out.tier is Tier.REMOTE and other_task.tier is Tier.REMOTE  # they did leave the box
    assert await store.status() == []


def test_capture_runs_only_when_enabled_and_some_task_learns(tmp_path: Path) -> None:
    state = open_state(Config(state_dir=str(tmp_path)))
    tasks = ChainedTasks(ConfigTasks(TASKS))

    def learning(config: Config) -> Learning:
        return Learning(config, tasks, state, Metrics())

    assert learning(Config(state_dir=str(tmp_path), tasks=TASKS)).recorder is not None
    off = Config(state_dir=str(tmp_path), tasks=TASKS, learning=LearningConfig(enabled=False))
    assert learning(off).recorder is None and learning(off).tasks is tasks
    assert learning(Config(state_dir=str(tmp_path), tasks={"summary": TaskConfig()})).recorder is None
    assert not (tmp_path / "training.sqlite3").exists()  # nothing is created before the first row


async def test_the_sqlite_file_and_its_journal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "state" / "training.sqlite3"
    store = SqliteTrainingStore(path)
    try:
        await store.add([TrainingRow(NOW, "trend", "r", "", (("user", "x"),), "up", "up", "p", "m", "rule", "", None)])
        files = [path, *path.parent.glob("training.sqlite3-*")]
        assert len(files) >= 2  # the file and its write-ahead log
        assert {file.name: stat.S_IMODE(file.stat().st_mode) for file in files} == {f.name: 0o600 for f in files}
    finally:
        await store.aclose()


def learn(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "gateway.toml"
    config.write_text('[tasks.trend]\nlabels = ["up", "down"]\nsystem_prompt = "Answer up or down."\nlearn = true\n')
    env = {**os.environ, "GATEWAY__STATE_DIR": json.dumps(str(tmp_path))}
    command = [sys.executable, "-m", "gateway", "learn", *args, "--config", str(config)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_learn_status_export_and_purge_read_the_configured_store(tmp_path: Path) -> None:
    store = SqliteTrainingStore(tmp_path / "training.sqlite3")
    rows = [
        TrainingRow(NOW + i, "trend", f"r{i}", "", (("user", f"q{i}"),), ans, ans, "openai", "m", "rule", "", None)
        for i, ans in enumerate(("up", "down", "up"))
    ]
    await store.add(rows)
    await store.set_threshold("trend", 0.74)
    await store.aclose()

    status = learn(tmp_path, "status")
    assert status.returncode == 0, status.stderr
    assert "learning: on for trend" in status.stdout
    assert "thresholds raised by the live audit: trend 0.740" in status.stdout
    assert "trend" in status.stdout and " 3 " in status.stdout and "down 1, up 2" in status.stdout
    assert "2026-11-18 11:06" in status.stdout  # the first row's time (1_795_000_000 s), UTC

    export = learn(tmp_path, "export", "--task", "trend")
    assert export.returncode == 0, export.stderr
    lines = [json.loads(line) for line in export.stdout.splitlines()]
    assert [line["label"] for line in lines] == ["up", "down", "up"]
    assert lines[0]["messages"] == [
        {"role": "system", "content": "Answer up or down."},
        {"role": "user", "content": "q0"},
    ]

    purge = learn(tmp_path, "purge", "--task", "trend")
    assert purge.returncode == 0 and "deleted 3 training rows of task trend" in purge.stdout
    assert "no training rows" in learn(tmp_path, "status").stdout
    refused = learn(tmp_path, "purge")
    assert refused.returncode == 2 and "one of the arguments --task --all is required" in refused.stderr
