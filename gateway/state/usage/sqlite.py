"""Usage records in SQLite (default): one row per answered request, aggregates computed in SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import astuple, fields
from pathlib import Path
from typing import TypeVar

from gateway.state.sqlite_worker import SqliteWorker
from gateway.state.usage.store import (
    DAY_ROW_COLUMNS,
    PERCENTILES,
    ROW_CHUNK,
    DayRows,
    DaySummary,
    LatencySummary,
    UsageRecord,
    day_rows_of,
    percentile_name,
    rank_index,
)

T = TypeVar("T")
_COLUMNS = tuple(f.name for f in fields(UsageRecord))
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    day TEXT NOT NULL,
    {", ".join(_COLUMNS)}
);
CREATE INDEX IF NOT EXISTS usage_records_day ON usage_records (day, latency_ms);
CREATE INDEX IF NOT EXISTS usage_records_ts ON usage_records (ts);
CREATE INDEX IF NOT EXISTS usage_records_client ON usage_records (client_id, day, latency_ms);
"""
# A whole batch is one statement over a JSON array (one row per record), so the writer thread hands the
# interpreter lock back and forth a few times per batch instead of a few times per row: request latency
# on the event loop does not wait on it.
_INSERT = (
    f"INSERT INTO usage_records (day, {', '.join(_COLUMNS)}) SELECT "
    + ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(_COLUMNS) + 1))
    + " FROM json_each(?)"
)


# Columns added after the first release: (name, declaration). A file written before them gains them on open.
_ADDED_COLUMNS = (
    ("overhead_ms", "REAL NOT NULL DEFAULT 0"),
    ("cached_prompt_tokens", "INTEGER NOT NULL DEFAULT 0"),
    ("cache_write_tokens", "INTEGER NOT NULL DEFAULT 0"),
)
_ADDED_INDEXES = "CREATE INDEX IF NOT EXISTS usage_records_overhead ON usage_records (day, overhead_ms);"


class SqliteUsageStore:
    def __init__(self, path: Path | str) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="usage-store")
        self._migrated = False

    async def add(self, records: Sequence[UsageRecord]) -> None:
        if records:
            batch = json.dumps([[r.day, *astuple(r)] for r in records], ensure_ascii=False)
            await self._run(lambda conn: conn.execute(_INSERT, (batch,)))

    async def summary(self, day: str, *, client: str = "") -> DaySummary:
        return await self._run(lambda conn: _summary(conn, day, client))

    async def recent(self, limit: int, *, client: str = "") -> list[UsageRecord]:
        where, args = ("WHERE client_id = ?", (client, limit)) if client else ("", (limit,))
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM usage_records {where} ORDER BY ts DESC, id DESC LIMIT ?", args
            ).fetchall()
        )
        return [UsageRecord(*row) for row in rows]

    async def day_rows(self, day: str) -> DayRows:
        sql = f"SELECT {', '.join(DAY_ROW_COLUMNS)} FROM usage_records WHERE day = ? ORDER BY ts, id"

        def read(conn: sqlite3.Connection) -> DayRows:
            cursor = conn.execute(sql, (day,))
            return day_rows_of(day, iter(lambda: cursor.fetchmany(ROW_CHUNK), []))

        return await self._run(read)

    async def purge(self, before_ts: float) -> None:
        await self._run(lambda conn: conn.execute("DELETE FROM usage_records WHERE ts < ?", (before_ts,)))

    async def aclose(self) -> None:
        await self._worker.aclose()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if not self._migrated:
            await self._worker.run(_add_columns)
            self._migrated = True
        return await self._worker.run(fn)


def _add_columns(conn: sqlite3.Connection) -> None:
    """Bring a file written by an earlier version up to the current columns (another process may race us)."""
    present = {row[1] for row in conn.execute("PRAGMA table_info(usage_records)")}
    for name, declaration in _ADDED_COLUMNS:
        if name not in present:
            try:
                conn.execute(f"ALTER TABLE usage_records ADD COLUMN {name} {declaration}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise
    conn.executescript(_ADDED_INDEXES)


def _summary(conn: sqlite3.Connection, day: str, client: str) -> DaySummary:
    """`client`: "" = every record; else only that client_id's."""
    scope, args = ("day = ? AND client_id = ?", (day, client)) if client else ("day = ?", (day,))

    def grouped(column: str, value: str = "COUNT(*)", where: str = "") -> dict[str, int]:
        sql = f"SELECT {column}, {value} FROM usage_records WHERE {scope} {where} GROUP BY {column}"
        return {str(key): int(total) for key, total in conn.execute(sql, args).fetchall() if total}

    requests, cost, reference, max_ms, cached, written = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(reference_cost_usd), 0), "
        "COALESCE(MAX(latency_ms), 0), COALESCE(SUM(cached_prompt_tokens), 0), COALESCE(SUM(cache_write_tokens), 0) "
        f"FROM usage_records WHERE {scope}",
        args,
    ).fetchone()

    def percentiles(column: str) -> dict[str, float]:
        found = {}
        for p in PERCENTILES if requests else ():
            (value,) = conn.execute(
                f"SELECT {column} FROM usage_records WHERE {scope} ORDER BY {column} LIMIT 1 OFFSET ?",
                (*args, rank_index(int(requests), p)),
            ).fetchone()
            found[percentile_name(p)] = float(value)
        return found

    (max_overhead,) = conn.execute(
        f"SELECT COALESCE(MAX(overhead_ms), 0) FROM usage_records WHERE {scope}", args
    ).fetchone()
    return DaySummary(
        day=day,
        requests=int(requests),
        requests_by_tier=grouped("tier"),
        requests_by_provider=grouped("provider"),
        escalations_by_reason=grouped("escalation", where="AND escalation != 'none'"),
        tokens_by_tier=grouped("tier", "SUM(prompt_tokens + completion_tokens)"),
        latency=LatencySummary(int(requests), percentiles("latency_ms"), float(max_ms)),
        overhead=LatencySummary(int(requests), percentiles("overhead_ms"), float(max_overhead)),
        cost_usd=float(cost),
        reference_cost_usd=float(reference),
        cached_prompt_tokens=int(cached),
        cache_write_tokens=int(written),
    )
