"""Training rows in SQLite (default): one file under state_dir, created readable by its owner only."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from gateway.state.learning.store import AuditRecord, Tally, TaskRows, TrainingRow
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
CREATE TABLE IF NOT EXISTS audits (
    task TEXT NOT NULL, ts REAL NOT NULL, threshold REAL NOT NULL, agreed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audits_task_ts ON audits (task, threshold, ts);
CREATE TABLE IF NOT EXISTS thresholds (task TEXT PRIMARY KEY, threshold REAL NOT NULL);
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
            conn.execute("DELETE FROM audits WHERE ts < ?", (older_than,))
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
        def purge(conn: sqlite3.Connection) -> int:
            where, args = ("", ()) if task is None else (" WHERE task = ?", (task,))
            conn.execute(f"DELETE FROM audits{where}", args)
            if task is None:
                conn.execute("DELETE FROM thresholds")
            else:  # the task's own raise and those of each of its adapter versions
                conn.execute(
                    "DELETE FROM thresholds WHERE task = ? OR substr(task, 1, ?) = ?", (task, len(task) + 1, task + "@")
                )
            return conn.execute(f"DELETE FROM training_rows{where}", args).rowcount

        return await self._worker.transaction(purge)

    async def add_audits(self, records: Sequence[AuditRecord]) -> None:
        if records:
            rows = [(r.task, r.ts, r.threshold, int(r.agreed)) for r in records]
            await self._worker.transaction(
                lambda conn: conn.executemany("INSERT INTO audits VALUES (?, ?, ?, ?)", rows)
            )

    async def tally(self, task: str, *, threshold: float, since: float) -> Tally:
        audited, agreed = await self._worker.run(
            lambda conn: conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(agreed), 0) FROM audits WHERE task = ? AND threshold = ? AND ts >= ?",
                (task, threshold, since),
            ).fetchone()
        )
        return Tally(int(audited), int(agreed))

    async def thresholds(self) -> dict[str, float]:
        rows = await self._worker.run(lambda conn: conn.execute("SELECT task, threshold FROM thresholds").fetchall())
        return {str(task): float(threshold) for task, threshold in rows}

    async def set_threshold(self, scope: str, threshold: float) -> None:
        await self._worker.transaction(
            lambda conn: conn.execute("INSERT OR REPLACE INTO thresholds VALUES (?, ?)", (scope, threshold))
        )

    async def aclose(self) -> None:
        await self._worker.aclose()
