"""Training rows in SQLite (default): one file under state_dir, created readable by its owner only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.state.learning.store import TaskRows, TrainingRow
from gateway.state.sqlite_worker import SqliteWorker

OWNER_ONLY = 0o600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS training_rows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task TEXT NOT NULL,
    ts REAL NOT NULL,
    label TEXT NOT NULL,
    row TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS training_rows_task_ts ON training_rows (task, ts);
"""
_INSERT = (
    "INSERT INTO training_rows (task, ts, label, row) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), "
    "json_extract(value, '$[3]') FROM json_each(?)"
)
_TRIM_BY_COUNT = """
DELETE FROM training_rows WHERE id IN (
    SELECT id FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY task ORDER BY ts DESC, id DESC) AS newest FROM training_rows
    ) WHERE newest > ?
)
"""


class SqliteTrainingStore:
    def __init__(self, path: Path | str) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="training-store", file_mode=OWNER_ONLY)

    async def add(self, rows: Sequence[TrainingRow]) -> None:
        if rows:
            batch = json.dumps([[r.task, r.ts, r.label, r.to_json()] for r in rows], ensure_ascii=False)
            await self._worker.transaction(lambda conn: conn.execute(_INSERT, (batch,)))

    async def trim(self, *, max_rows: int, older_than: float) -> int:
        def trim(conn: sqlite3.Connection) -> int:
            by_age = conn.execute("DELETE FROM training_rows WHERE ts < ?", (older_than,)).rowcount
            return by_age + conn.execute(_TRIM_BY_COUNT, (max_rows,)).rowcount

        return await self._worker.transaction(trim)

    async def status(self) -> list[TaskRows]:
        def read(conn: sqlite3.Connection) -> list[TaskRows]:
            spans = conn.execute(
                "SELECT task, COUNT(*), MIN(ts), MAX(ts) FROM training_rows GROUP BY task ORDER BY task"
            ).fetchall()
            labels: dict[str, dict[str, int]] = {}
            for task, label, count in conn.execute(
                "SELECT task, label, COUNT(*) FROM training_rows GROUP BY task, label ORDER BY task, label"
            ):
                labels.setdefault(task, {})[label] = count
            return [TaskRows(task, rows, first, last, labels.get(task, {})) for task, rows, first, last in spans]

        return await self._worker.run(read)

    async def rows(self, task: str) -> list[TrainingRow]:
        raw = await self._worker.run(
            lambda conn: conn.execute(
                "SELECT row FROM training_rows WHERE task = ? ORDER BY ts, id", (task,)
            ).fetchall()
        )
        return [TrainingRow.from_json(row) for (row,) in raw]

    async def purge(self, task: str | None) -> int:
        if task is None:
            return await self._worker.transaction(lambda conn: conn.execute("DELETE FROM training_rows").rowcount)
        return await self._worker.transaction(
            lambda conn: conn.execute("DELETE FROM training_rows WHERE task = ?", (task,)).rowcount
        )

    async def aclose(self) -> None:
        await self._worker.aclose()
