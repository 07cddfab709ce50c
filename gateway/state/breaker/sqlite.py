"""Shared circuit-breaker state in SQLite: each transition is one BEGIN IMMEDIATE read-modify-write.

A step that leaves a stored record as it was (a request let through a closed
circuit, a success while closed) writes nothing.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from gateway.state.breaker import machine
from gateway.state.breaker.machine import (
    BreakerRecord,
    BreakerSettings,
    BreakerState,
    Permit,
    decode_record,
    encode_record,
)
from gateway.state.sqlite_worker import SqliteWorker

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS breaker_state (provider TEXT PRIMARY KEY, record TEXT NOT NULL);
"""


class SqliteBreakerStore:
    def __init__(
        self,
        path: Path | str,
        settings: BreakerSettings,
        *,
        lease_s: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._worker = SqliteWorker(path, _SCHEMA, name="breaker-state")
        self._settings = settings
        self._lease_s = settings.cooldown_s if lease_s is None else lease_s
        self._wall = wall

    async def allow(self, provider: str) -> Permit | None:
        now = self._wall()
        return await self._update(provider, lambda r: machine.allow(r, self._settings, now, self._lease_s))

    async def release(self, provider: str, permit: Permit) -> None:
        await self._update(provider, lambda r: (machine.release(r, permit), None))

    async def record_success(self, provider: str) -> None:
        await self._update(provider, lambda r: (machine.succeed(r), None))

    async def record_failure(self, provider: str) -> None:
        now = self._wall()
        await self._update(provider, lambda r: (machine.fail(r, self._settings, now), None))

    async def block_for(self, provider: str, seconds: float) -> None:
        now = self._wall()
        await self._update(provider, lambda r: (machine.block(r, seconds, now), None))

    async def state(self, provider: str) -> BreakerState:
        record = await self._worker.run(lambda conn: _read(conn, provider))
        return machine.visible(record, self._settings, self._wall())

    async def describe(self, provider: str) -> str:
        record = await self._worker.run(lambda conn: _read(conn, provider))
        return machine.describe(record, self._settings, self._wall())

    async def states(self) -> dict[str, BreakerState]:
        rows = await self._worker.run(
            lambda conn: conn.execute("SELECT provider, record FROM breaker_state").fetchall()
        )
        now = self._wall()
        return {provider: machine.visible(decode_record(raw), self._settings, now) for provider, raw in rows}

    async def aclose(self) -> None:
        await self._worker.aclose()

    async def _update(self, provider: str, step: Callable[[BreakerRecord], tuple[BreakerRecord, T]]) -> T:
        def work(conn: sqlite3.Connection) -> T:
            row = conn.execute("SELECT record FROM breaker_state WHERE provider = ?", (provider,)).fetchone()
            before = BreakerRecord() if row is None else decode_record(row[0])
            record, value = step(before)
            if row is not None and record == before:
                return value  # nothing changed; a new provider still gets its row, for states()
            conn.execute(
                "INSERT OR REPLACE INTO breaker_state (provider, record) VALUES (?, ?)",
                (provider, encode_record(record)),
            )
            return value

        return await self._worker.transaction(work)


def _read(conn: sqlite3.Connection, provider: str) -> BreakerRecord:
    row = conn.execute("SELECT record FROM breaker_state WHERE provider = ?", (provider,)).fetchone()
    return BreakerRecord() if row is None else decode_record(row[0])
