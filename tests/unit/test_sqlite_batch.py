"""Group commit on one SQLite connection: steps share a transaction but fail alone."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.state.sqlite_batch import run_steps
from gateway.state.sqlite_worker import SqliteWorker

SCHEMA = "CREATE TABLE IF NOT EXISTS t (v INTEGER NOT NULL);"


def _insert(value: int) -> Callable[[sqlite3.Connection], int]:
    def step(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        if value < 0:
            raise ValueError(value)
        return value

    return step


def _values(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        values = sorted(v for (v,) in conn.execute("SELECT v FROM t"))
    conn.close()
    return values


def test_a_failing_step_rolls_back_only_its_own_writes(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    conn.executescript(SCHEMA)
    outcomes = run_steps(conn, [_insert(1), _insert(-2), _insert(3)])
    assert [o.value for o in outcomes] == [1, None, 3]
    assert isinstance(outcomes[1].error, ValueError)
    assert not conn.in_transaction
    conn.close()
    assert _values(tmp_path / "s.sqlite3") == [1, 3]


def test_a_single_failing_step_leaves_nothing(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None)
    conn.executescript(SCHEMA)
    (outcome,) = run_steps(conn, [_insert(-1)])
    assert isinstance(outcome.error, ValueError)
    assert not conn.in_transaction
    conn.close()
    assert _values(tmp_path / "s.sqlite3") == []


async def test_concurrent_transactions_each_get_their_own_result_or_error(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "s.sqlite3", SCHEMA, name="test")
    try:
        values = [i if i % 5 else -i for i in range(1, 101)]
        results = await asyncio.gather(*(worker.transaction(_insert(v)) for v in values), return_exceptions=True)
        for value, result in zip(values, results, strict=True):
            if value < 0:
                assert isinstance(result, ValueError)
            else:
                assert result == value
    finally:
        await worker.aclose()
    assert _values(tmp_path / "s.sqlite3") == [v for v in range(1, 101) if v % 5]


async def test_a_caller_cancelled_before_its_turn_writes_nothing(tmp_path: Path) -> None:
    worker = SqliteWorker(tmp_path / "s.sqlite3", SCHEMA, name="test")
    try:
        first = asyncio.ensure_future(worker.transaction(_insert(1)))
        await asyncio.sleep(0)  # its batch is on the worker thread
        second = asyncio.ensure_future(worker.transaction(_insert(2)))
        await asyncio.sleep(0)
        second.cancel()
        assert await first == 1
        with pytest.raises(asyncio.CancelledError):
            await second
        await worker.transaction(_insert(3))
    finally:
        await worker.aclose()
    assert _values(tmp_path / "s.sqlite3") == [1, 3]


async def test_processes_opening_one_new_file_at_once_all_get_in(tmp_path: Path) -> None:
    """Switching a new file to WAL can be refused as "locked" without a wait while another
    connection opens it; every opener retries instead of failing its first request."""
    for round_ in range(60):
        path = tmp_path / f"new-{round_}.sqlite3"
        workers = [SqliteWorker(path, SCHEMA, name=f"opener-{i}") for i in range(8)]
        try:
            answers = await asyncio.gather(*(w.run(lambda c: c.execute("SELECT 1").fetchone()[0]) for w in workers))
        finally:
            for worker in workers:
                await worker.aclose()
        assert answers == [1] * 8
