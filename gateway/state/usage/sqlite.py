"""Usage records in SQLite (default): one row per answered request, aggregates computed in SQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import astuple, fields
from pathlib import Path

from gateway.state.sqlite_worker import SqliteWorker
from gateway.state.usage.store import (
    PERCENTILES,
    DaySummary,
    LatencySummary,
    UsageRecord,
    percentile_name,
    rank_index,
)

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


class SqliteUsageStore:
    def __init__(self, path: Path | str) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="usage-store")

    async def add(self, records: Sequence[UsageRecord]) -> None:
        if records:
            batch = json.dumps([[r.day, *astuple(r)] for r in records], ensure_ascii=False)
            await self._worker.run(lambda conn: conn.execute(_INSERT, (batch,)))

    async def summary(self, day: str, *, client: str = "") -> DaySummary:
        return await self._worker.run(lambda conn: _summary(conn, day, client))

    async def recent(self, limit: int, *, client: str = "") -> list[UsageRecord]:
        where, args = ("WHERE client_id = ?", (client, limit)) if client else ("", (limit,))
        rows = await self._worker.run(
            lambda conn: conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM usage_records {where} ORDER BY ts DESC, id DESC LIMIT ?", args
            ).fetchall()
        )
        return [UsageRecord(*row) for row in rows]

    async def purge(self, before_ts: float) -> None:
        await self._worker.run(lambda conn: conn.execute("DELETE FROM usage_records WHERE ts < ?", (before_ts,)))

    async def aclose(self) -> None:
        await self._worker.aclose()


def _summary(conn: sqlite3.Connection, day: str, client: str) -> DaySummary:
    """`client`: "" = every record; else only that client_id's."""
    scope, args = ("day = ? AND client_id = ?", (day, client)) if client else ("day = ?", (day,))

    def grouped(column: str, value: str = "COUNT(*)", where: str = "") -> dict[str, int]:
        sql = f"SELECT {column}, {value} FROM usage_records WHERE {scope} {where} GROUP BY {column}"
        return {str(key): int(total) for key, total in conn.execute(sql, args).fetchall() if total}

    requests, cost, reference, max_ms = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM(reference_cost_usd), 0), "
        f"COALESCE(MAX(latency_ms), 0) FROM usage_records WHERE {scope}",
        args,
    ).fetchone()
    percentiles = {}
    if requests:
        for p in PERCENTILES:
            (value,) = conn.execute(
                f"SELECT latency_ms FROM usage_records WHERE {scope} ORDER BY latency_ms LIMIT 1 OFFSET ?",
                (*args, rank_index(int(requests), p)),
            ).fetchone()
            percentiles[percentile_name(p)] = float(value)
    return DaySummary(
        day=day,
        requests=int(requests),
        requests_by_tier=grouped("tier"),
        requests_by_provider=grouped("provider"),
        escalations_by_reason=grouped("escalation", where="AND escalation != 'none'"),
        tokens_by_tier=grouped("tier", "SUM(prompt_tokens + completion_tokens)"),
        latency=LatencySummary(int(requests), percentiles, float(max_ms)),
        cost_usd=float(cost),
        reference_cost_usd=float(reference),
    )
