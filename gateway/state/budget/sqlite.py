"""The default token ledger: one SQLite file in WAL mode, exact across tasks and processes.

Check-and-reserve runs inside a `BEGIN IMMEDIATE` transaction, so two gateways
sharing the file cannot both take the last tokens; reservations queued while
one transaction runs commit together (gateway/state/sqlite_batch.py), each checked
in turn against the total the ones before it left. Every call runs on one
dedicated thread that owns the connection, never on the event loop.

Each reservation is a row; `token_totals` keeps the per day and provider sums,
maintained by triggers in the file itself (so every process writing the file
keeps them right), and the check reads one row instead of summing the day.
`settled` is 0 while the call runs, 1 once reconciled, 2 when it expired open
(counted at its estimate); a partial index keeps the open ones quick to find.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from gateway.state.budget.ledger import LedgerUsage, Reservation
from gateway.state.sqlite_worker import SqliteWorker

_SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS token_reservations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    provider TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS token_reservations_day ON token_reservations (day, provider);
CREATE INDEX IF NOT EXISTS token_reservations_open ON token_reservations (created_at) WHERE settled = 0;
CREATE TABLE IF NOT EXISTS token_totals (
    day TEXT NOT NULL,
    provider TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (day, provider)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS token_totals_add AFTER INSERT ON token_reservations BEGIN
    INSERT INTO token_totals (day, provider, tokens, requests) VALUES (NEW.day, NEW.provider, NEW.tokens, 1)
    ON CONFLICT (day, provider) DO UPDATE SET tokens = tokens + excluded.tokens, requests = requests + 1;
END;
CREATE TRIGGER IF NOT EXISTS token_totals_change AFTER UPDATE OF tokens, day, provider ON token_reservations BEGIN
    UPDATE token_totals SET tokens = tokens - OLD.tokens, requests = requests - 1
    WHERE day = OLD.day AND provider = OLD.provider;
    INSERT INTO token_totals (day, provider, tokens, requests) VALUES (NEW.day, NEW.provider, NEW.tokens, 1)
    ON CONFLICT (day, provider) DO UPDATE SET tokens = tokens + excluded.tokens, requests = requests + 1;
END;
CREATE TRIGGER IF NOT EXISTS token_totals_remove AFTER DELETE ON token_reservations BEGIN
    UPDATE token_totals SET tokens = tokens - OLD.tokens, requests = requests - 1
    WHERE day = OLD.day AND provider = OLD.provider;
END;
INSERT INTO token_totals (day, provider, tokens, requests)
    SELECT day, provider, SUM(tokens), COUNT(*) FROM token_reservations
    WHERE NOT EXISTS (SELECT 1 FROM token_totals) GROUP BY day, provider;
COMMIT;
"""
# The last INSERT fills the totals once, for a file written before they existed; it runs in the same
# transaction that creates the triggers, so no reservation another process makes can be missed.


class SqliteLedger:
    def __init__(self, path: Path | str, *, busy_timeout_s: float = 10.0) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="token-ledger", busy_timeout_s=busy_timeout_s)

    # -- TokenLedger -----------------------------------------------------------------

    async def reserve(self, provider: str, tokens: int, *, day: str, limit: int | None) -> Reservation | None:
        created_at = datetime.now(UTC).isoformat()
        return await self._worker.transaction(lambda conn: _reserve(conn, provider, tokens, day, limit, created_at))

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        await self._worker.transaction(
            lambda conn: conn.execute(
                "UPDATE token_reservations SET tokens = ?, settled = 1 WHERE id = ?", (actual_tokens, reservation.id)
            )
        )

    async def release(self, reservation: Reservation) -> None:
        await self._worker.transaction(
            lambda conn: conn.execute("DELETE FROM token_reservations WHERE id = ?", (reservation.id,))
        )

    async def usage(self, day: str) -> dict[str, LedgerUsage]:
        rows = await self._worker.run(
            lambda conn: conn.execute(
                "SELECT provider, tokens, requests FROM token_totals WHERE day = ? AND requests > 0", (day,)
            ).fetchall()
        )
        return {provider: LedgerUsage(provider, int(tokens), int(count)) for provider, tokens, count in rows}

    async def settle_expired(self, before: datetime) -> int:
        cutoff = before.astimezone(UTC).isoformat()
        return await self._worker.transaction(lambda conn: _expire(conn, cutoff))

    async def aclose(self) -> None:
        await self._worker.aclose()


def _reserve(
    conn: sqlite3.Connection, provider: str, tokens: int, day: str, limit: int | None, created_at: str
) -> Reservation | None:
    """Inside a BEGIN IMMEDIATE transaction: check the day's total against `limit`, then record the reservation."""
    if limit is not None:
        row = conn.execute("SELECT tokens FROM token_totals WHERE day = ? AND provider = ?", (day, provider)).fetchone()
        used = int(row[0]) if row is not None else 0
        if used + tokens > limit:
            return None
    cursor = conn.execute(
        "INSERT INTO token_reservations (provider, day, tokens, created_at) VALUES (?, ?, ?, ?)",
        (provider, day, tokens, created_at),
    )
    assert cursor.lastrowid is not None
    return Reservation(cursor.lastrowid, provider, day, tokens)


def _expire(conn: sqlite3.Connection, cutoff: str) -> int:
    """Mark the reservations still open and made before `cutoff` as expired (their estimate stays counted)."""
    sql = "UPDATE token_reservations SET settled = 2 WHERE settled = 0 AND created_at < ?"
    return conn.execute(sql, (cutoff,)).rowcount
