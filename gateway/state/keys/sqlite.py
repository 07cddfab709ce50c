"""API keys in SQLite (default): one file under state_dir, created readable by its owner only."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from gateway.state.keys.store import ApiKey, KeyNameTaken
from gateway.state.sqlite_worker import SqliteWorker

OWNER_ONLY = 0o600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL,
    row TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
"""


class SqliteKeyStore:
    def __init__(self, path: Path | str) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="key-store", file_mode=OWNER_ONLY)

    async def add(self, key: ApiKey) -> None:
        def add(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO api_keys (key_id, name, created_at, revoked_at, row) VALUES (?, ?, ?, NULL, ?)",
                    (key.key_id, key.name, key.created_at, key.to_json()),
                )
            except sqlite3.IntegrityError as exc:
                raise KeyNameTaken(key.name) from exc

        await self._worker.transaction(add)

    async def revoke(self, name: str, *, at: float) -> bool:
        def revoke(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name)
            )
            return cursor.rowcount > 0

        return await self._worker.transaction(revoke)

    async def all(self) -> list[ApiKey]:
        rows = await self._worker.run(
            lambda conn: conn.execute("SELECT row, revoked_at FROM api_keys ORDER BY created_at, key_id").fetchall()
        )
        return [_key(row, revoked_at) for row, revoked_at in rows]

    async def aclose(self) -> None:
        await self._worker.aclose()


def _key(row: str, revoked_at: float | None) -> ApiKey:
    key = ApiKey.from_json(row)
    return key if revoked_at is None else dataclasses.replace(key, revoked_at=float(revoked_at))
