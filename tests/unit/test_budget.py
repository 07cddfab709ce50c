"""Token ledgers: reserve/reconcile/release, UTC days, exactness under concurrency, restart."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gateway.state.budget.ledger import TokenLedger, next_reset, utc_day
from gateway.state.budget.memory import MemoryLedger
from gateway.state.budget.sqlite import SqliteLedger

DAY = "2026-11-25"
ROOT = str(Path(__file__).resolve().parents[2])


@pytest.fixture(params=["sqlite", "memory"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenLedger]:
    made: TokenLedger = SqliteLedger(tmp_path / "ledger.sqlite3") if request.param == "sqlite" else MemoryLedger()
    yield made
    await made.aclose()


async def test_reserve_until_the_limit_then_refuse(ledger: TokenLedger) -> None:
    assert await ledger.reserve("openai", 600, day=DAY, limit=1000) is not None
    assert await ledger.reserve("openai", 401, day=DAY, limit=1000) is None
    assert await ledger.reserve("openai", 400, day=DAY, limit=1000) is not None
    assert await ledger.reserve("openai", 1, day=DAY, limit=1000) is None
    usage = await ledger.usage(DAY)
    assert (usage["openai"].tokens_used, usage["openai"].requests) == (1000, 2)


async def test_providers_and_days_are_separate(ledger: TokenLedger) -> None:
    assert await ledger.reserve("openai", 1000, day=DAY, limit=1000) is not None
    assert await ledger.reserve("anthropic", 1000, day=DAY, limit=1000) is not None
    assert await ledger.reserve("openai", 1000, day="2026-11-26", limit=1000) is not None
    assert set(await ledger.usage(DAY)) == {"openai", "anthropic"}


async def test_no_limit_always_reserves(ledger: TokenLedger) -> None:
    assert await ledger.reserve("hf", 10**9, day=DAY, limit=None) is not None


async def test_reconcile_replaces_the_estimate_and_frees_the_difference(ledger: TokenLedger) -> None:
    reservation = await ledger.reserve("openai", 900, day=DAY, limit=1000)
    assert reservation is not None
    assert await ledger.reserve("openai", 200, day=DAY, limit=1000) is None
    await ledger.reconcile(reservation, 120)
    assert (await ledger.usage(DAY))["openai"].tokens_used == 120
    assert await ledger.reserve("openai", 200, day=DAY, limit=1000) is not None


async def test_release_gives_tokens_and_the_request_back(ledger: TokenLedger) -> None:
    reservation = await ledger.reserve("openai", 1000, day=DAY, limit=1000)
    assert reservation is not None
    await ledger.release(reservation)
    assert "openai" not in await ledger.usage(DAY)
    assert await ledger.reserve("openai", 1000, day=DAY, limit=1000) is not None


async def test_500_concurrent_reservations_never_pass_the_limit(ledger: TokenLedger) -> None:
    results = await asyncio.gather(*(ledger.reserve("openai", 7, day=DAY, limit=1000) for _ in range(500)))
    granted = [r for r in results if r is not None]
    assert len(granted) == 1000 // 7
    assert (await ledger.usage(DAY))["openai"].tokens_used == 7 * (1000 // 7) <= 1000


async def test_two_processes_sharing_the_file_never_pass_the_limit(tmp_path: Path) -> None:
    """Two ledgers on one file (each with its own connection and thread) stand in for two gateway processes."""
    path = tmp_path / "shared.sqlite3"
    first, second = SqliteLedger(path), SqliteLedger(path)
    try:
        calls = [(first if i % 2 else second).reserve("openai", 10, day=DAY, limit=1000) for i in range(300)]
        granted = [r for r in await asyncio.gather(*calls) if r is not None]
        assert len(granted) == 100
        assert (await first.usage(DAY))["openai"].tokens_used == 1000
    finally:
        await first.aclose()
        await second.aclose()


async def test_sqlite_ledger_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    before = SqliteLedger(path)
    reservation = await before.reserve("openai", 800, day=DAY, limit=1000)
    assert reservation is not None
    await before.reconcile(reservation, 750)
    await before.aclose()
    after = SqliteLedger(path)
    try:
        assert (await after.usage(DAY))["openai"].tokens_used == 750
        assert await after.reserve("openai", 251, day=DAY, limit=1000) is None
    finally:
        await after.aclose()


def test_utc_day_and_reset_follow_utc_not_local_time() -> None:
    late_in_new_york = datetime(2026, 11, 25, 20, 0, tzinfo=timezone(timedelta(hours=-5)))  # 01:00 UTC on the 26th
    assert utc_day(late_in_new_york) == "2026-11-26"
    assert next_reset(late_in_new_york) == datetime(2026, 11, 27, tzinfo=UTC)
    assert next_reset(datetime(2026, 11, 25, 23, 59, 59, tzinfo=UTC)) == datetime(2026, 11, 26, tzinfo=UTC)


RESERVE_SCRIPT = """
import asyncio, sys
from gateway.state.budget.sqlite import SqliteLedger

async def main():
    ledger = SqliteLedger(sys.argv[1])
    results = await asyncio.gather(*(ledger.reserve("openai", 10, day=sys.argv[2], limit=1000) for _ in range(150)))
    await ledger.aclose()
    print(sum(r is not None for r in results))

asyncio.run(main())
"""


async def test_separate_processes_never_pass_the_limit(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RESERVE_SCRIPT, path, DAY, cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outputs = [await proc.communicate() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert sum(int(out.decode()) for out, _ in outputs) == 100
    ledger = SqliteLedger(path)
    try:
        assert (await ledger.usage(DAY))["openai"].tokens_used == 1000
    finally:
        await ledger.aclose()


async def test_a_ledger_file_from_before_the_totals_table_keeps_its_spend(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # the schema and rows an earlier release wrote
        conn.executescript(
            "CREATE TABLE token_reservations (id INTEGER PRIMARY KEY AUTOINCREMENT, provider TEXT NOT NULL, "
            "day TEXT NOT NULL, tokens INTEGER NOT NULL, settled INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);"
        )
        conn.executemany(
            "INSERT INTO token_reservations (provider, day, tokens, settled, created_at) VALUES (?, ?, ?, 1, '')",
            [("openai", DAY, 300), ("openai", DAY, 400), ("anthropic", DAY, 50), ("openai", "2026-11-24", 999)],
        )
    conn.close()
    ledger = SqliteLedger(path)
    try:
        usage = await ledger.usage(DAY)
        assert (usage["openai"].tokens_used, usage["openai"].requests) == (700, 2)
        assert usage["anthropic"].tokens_used == 50
        assert await ledger.reserve("openai", 301, day=DAY, limit=1000) is None
        assert await ledger.reserve("openai", 300, day=DAY, limit=1000) is not None
    finally:
        await ledger.aclose()
    reopened = SqliteLedger(path)  # opening again does not count the rows twice
    try:
        assert (await reopened.usage(DAY))["openai"].tokens_used == 1000
    finally:
        await reopened.aclose()


async def test_totals_follow_reconcile_and_release_under_concurrency(tmp_path: Path) -> None:
    ledger = SqliteLedger(tmp_path / "ledger.sqlite3")
    try:
        granted = [
            r
            for r in await asyncio.gather(*(ledger.reserve("openai", 10, day=DAY, limit=None) for _ in range(200)))
            if r
        ]
        await asyncio.gather(*(ledger.reconcile(r, 3) if i % 2 else ledger.release(r) for i, r in enumerate(granted)))
        usage = await ledger.usage(DAY)
        assert (usage["openai"].tokens_used, usage["openai"].requests) == (300, 100)
        with sqlite3.connect(tmp_path / "ledger.sqlite3") as conn:  # the totals agree with the rows
            assert conn.execute("SELECT SUM(tokens), COUNT(*) FROM token_reservations").fetchone() == (300, 100)
        conn.close()
    finally:
        await ledger.aclose()


async def test_an_open_reservation_expires_at_its_estimate_and_a_settled_one_never(ledger: TokenLedger) -> None:
    settled = await ledger.reserve("openai", 300, day=DAY, limit=1000)
    released = await ledger.reserve("openai", 100, day=DAY, limit=1000)
    left_open = await ledger.reserve("openai", 200, day=DAY, limit=1000)
    assert settled is not None and released is not None and left_open is not None
    await ledger.reconcile(settled, 250)
    await ledger.release(released)
    assert await ledger.settle_expired(datetime.now(UTC) - timedelta(hours=1)) == 0  # nothing that old yet
    assert await ledger.settle_expired(datetime.now(UTC) + timedelta(seconds=1)) == 1  # only the open one
    usage = (await ledger.usage(DAY))["openai"]
    assert (usage.tokens_used, usage.requests) == (450, 2)  # expiry keeps the estimate, counts it once
    assert await ledger.settle_expired(datetime.now(UTC) + timedelta(seconds=1)) == 0  # expired once only
    await ledger.reconcile(left_open, 180)  # a reconcile arriving after all still replaces the estimate
    usage = (await ledger.usage(DAY))["openai"]
    assert (usage.tokens_used, usage.requests) == (430, 2)


async def test_the_expiry_sweep_settles_what_a_killed_process_left_open(tmp_path: Path) -> None:
    from gateway.state.budget.expiry import ReservationExpiry

    path = tmp_path / "ledger.sqlite3"
    dead = SqliteLedger(path)  # stands in for a process killed mid-call: reserved, never settled
    assert await dead.reserve("openai", 400, day=DAY, limit=1000) is not None
    await dead.aclose()
    ledger = SqliteLedger(path)
    now = [datetime.now(UTC).timestamp()]
    sweeper = ReservationExpiry(ledger, expiry_s=60, wall=lambda: now[0])
    try:
        assert await sweeper.sweep() == 0  # younger than the expiry: may still be running somewhere
        now[0] += 61
        assert await sweeper.sweep() == 1
        assert (await ledger.usage(DAY))["openai"].tokens_used == 400
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT settled FROM token_reservations").fetchall() == [(2,)]
        conn.close()
    finally:
        await ledger.aclose()
