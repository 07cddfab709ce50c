"""The default token ledger: one SQLite file in WAL mode, exact across tasks and processes.

Check-and-reserve is one `BEGIN IMMEDIATE` transaction, so two gateways sharing
the file cannot both take the last tokens. Every call runs on one dedicated
thread that owns the connection, never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from gateway.budget import LedgerUsage, Reservation

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS token_reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS token_reservations_day ON token_reservations (day, provider);
"""


class SqliteLedger:
    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0) -> None:
        self._path = str(path)
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-ledger")
        self._conn: sqlite3.Connection | None = None

    # -- TokenLedger -----------------------------------------------------------------

    async def reserve(self, provider: str, tokens: int, *, day: str, limit: int | None) -> Reservation | None:
        return await self._run(lambda conn: _reserve(conn, provider, tokens, day, limit))

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        await self._run(
            lambda conn: _write(
                conn,
                "UPDATE token_reservations SET tokens = ?, settled = 1 WHERE id = ?",
                (actual_tokens, reservation.id),
            )
        )

    async def release(self, reservation: Reservation) -> None:
        await self._run(lambda conn: _write(conn, "DELETE FROM token_reservations WHERE id = ?", (reservation.id,)))

    async def usage(self, day: str) -> dict[str, LedgerUsage]:
        rows = await self._run(
            lambda conn: conn.execute(
                "SELECT provider, SUM(tokens), COUNT(*) FROM token_reservations WHERE day = ? GROUP BY provider", (day,)
            ).fetchall()
        )
        return {provider: LedgerUsage(provider, int(tokens), int(count)) for provider, tokens, count in rows}

    async def aclose(self) -> None:
        try:
            await self._run(lambda conn: conn.close(), open_if_needed=False)
        finally:
            self._executor.shutdown(wait=True)

    # -- plumbing ----------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, open_if_needed: bool = True) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn, open_if_needed)

    def _call(self, fn: Callable[[sqlite3.Connection], T], open_if_needed: bool) -> T:
        if self._conn is None:
            if not open_if_needed:
                return None  # type: ignore[return-value]
            self._conn = self._open()
        return fn(self._conn)

    def _open(self) -> sqlite3.Connection:
        Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(_SCHEMA)
        return conn


def _reserve(conn: sqlite3.Connection, provider: str, tokens: int, day: str, limit: int | None) -> Reservation | None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        (used,) = conn.execute(
            "SELECT COALESCE(SUM(tokens), 0) FROM token_reservations WHERE day = ? AND provider = ?", (day, provider)
        ).fetchone()
        if limit is not None and int(used) + tokens > limit:
            conn.execute("ROLLBACK")
            return None
        cursor = conn.execute(
            "INSERT INTO token_reservations (provider, day, tokens, created_at) VALUES (?, ?, ?, ?)",
            (provider, day, tokens, datetime.now(UTC).isoformat()),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    assert cursor.lastrowid is not None
    return Reservation(cursor.lastrowid, provider, day, tokens)


def _write(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> None:
    conn.execute(sql, params)
