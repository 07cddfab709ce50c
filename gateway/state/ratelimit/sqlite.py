"""requests_per_minute in SQLite: one row per request sent, counted inside one BEGIN IMMEDIATE transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.state.ratelimit.store import WINDOW_S, window_start
from gateway.state.sqlite_worker import SqliteWorker

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_events (provider TEXT NOT NULL, ts REAL NOT NULL);
CREATE INDEX IF NOT EXISTS rate_events_provider_ts ON rate_events (provider, ts);
"""


class SqliteRateLimitState:
    def __init__(self, path: Path | str, *, wall: Callable[[], float] = time.time) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="rate-limit")
        self._wall = wall

    async def try_acquire(self, provider: str, per_minute: int) -> bool:
        if per_minute <= 0:
            return True
        now = self._wall()
        return await self._worker.transaction(lambda conn: _acquire(conn, provider, per_minute, now))

    async def free_in_s(self, provider: str, per_minute: int) -> float:
        if per_minute <= 0:
            return 0.0
        now = self._wall()
        rows = await self._worker.run(
            lambda conn: conn.execute(
                "SELECT ts FROM rate_events WHERE provider = ? AND ts > ? ORDER BY ts LIMIT ?",
                (provider, window_start(now), per_minute),
            ).fetchall()
        )
        if len(rows) < per_minute:
            return 0.0
        return max(0.0, float(rows[0][0]) + WINDOW_S - now)

    async def aclose(self) -> None:
        await self._worker.aclose()


def _acquire(conn: sqlite3.Connection, provider: str, per_minute: int, now: float) -> bool:
    conn.execute("DELETE FROM rate_events WHERE provider = ? AND ts <= ?", (provider, window_start(now)))
    (count,) = conn.execute("SELECT COUNT(*) FROM rate_events WHERE provider = ?", (provider,)).fetchone()
    if int(count) >= per_minute:
        return False
    conn.execute("INSERT INTO rate_events (provider, ts) VALUES (?, ?)", (provider, now))
    return True
