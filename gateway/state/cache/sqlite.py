"""The default response cache: one SQLite table, TTL by expiry time, size bound by evicting the oldest."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.state.cache.store import CachedAnswer
from gateway.state.sqlite_worker import SqliteWorker

_SCHEMA = """
CREATE TABLE IF NOT EXISTS response_cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS response_cache_expires ON response_cache (expires_at);
CREATE INDEX IF NOT EXISTS response_cache_created ON response_cache (created_at);
"""


class SqliteCache:
    def __init__(self, path: Path | str, *, max_entries: int, now: Callable[[], float] = time.time) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="response-cache")
        self._max_entries = max_entries
        self._now = now

    async def get(self, key: str) -> CachedAnswer | None:
        now = self._now()
        row = await self._worker.run(
            lambda conn: conn.execute(
                "SELECT value FROM response_cache WHERE key = ? AND expires_at > ?", (key, now)
            ).fetchone()
        )
        return None if row is None else CachedAnswer.from_json(row[0])

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float) -> None:
        now = self._now()
        value = answer.to_json()
        await self._worker.transaction(lambda conn: self._put(conn, key, value, now, now + ttl_s))

    async def size(self) -> int:
        (count,) = await self._worker.run(lambda conn: conn.execute("SELECT COUNT(*) FROM response_cache").fetchone())
        return int(count)

    async def clear(self) -> None:
        await self._worker.run(lambda conn: conn.execute("DELETE FROM response_cache"))

    async def aclose(self) -> None:
        await self._worker.aclose()

    def _put(self, conn: sqlite3.Connection, key: str, value: str, now: float, expires_at: float) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO response_cache (key, value, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (key, value, now, expires_at),
        )
        conn.execute("DELETE FROM response_cache WHERE expires_at <= ?", (now,))
        (count,) = conn.execute("SELECT COUNT(*) FROM response_cache").fetchone()
        excess = int(count) - self._max_entries
        if excess > 0:
            conn.execute(
                "DELETE FROM response_cache WHERE key IN "
                "(SELECT key FROM response_cache ORDER BY created_at, rowid LIMIT ?)",
                (excess,),
            )
