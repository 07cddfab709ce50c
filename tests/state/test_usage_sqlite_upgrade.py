"""A usage file written before `overhead_ms` and the prompt-cache counts existed gains the columns on open and
keeps its records."""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

from gateway.state.usage.sqlite import SqliteUsageStore
from gateway.state.usage.store import UsageRecord

ADDED = ("overhead_ms", "cached_prompt_tokens", "cache_write_tokens")  # columns the old file lacks
OLD_COLUMNS = [f.name for f in fields(UsageRecord) if f.name not in ADDED]


def old_file(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE usage_records (id INTEGER PRIMARY KEY AUTOINCREMENT, day TEXT NOT NULL, "
        + ", ".join(OLD_COLUMNS)
        + ")"
    )
    values = [
        "2026-11-18",
        1_795_000_000.0,
        "old",
        "",
        "",
        "local",
        "echo",
        "echo",
        "",
        3,
        1,
        2.5,
        None,
        "none",
        0.0,
        0.0,
        "",
    ]
    conn.execute(
        f"INSERT INTO usage_records (day, {', '.join(OLD_COLUMNS)}) VALUES ({', '.join('?' * len(values))})", values
    )
    conn.commit()
    conn.close()


async def test_an_old_file_is_upgraded_and_its_records_count_with_no_overhead(tmp_path: Path) -> None:
    path = tmp_path / "usage.sqlite3"
    old_file(path)
    store = SqliteUsageStore(path)
    try:
        new = UsageRecord(
            1_795_000_001.0,
            "new",
            "",
            "",
            "local",
            "echo",
            "echo",
            "",
            3,
            1,
            4.0,
            None,
            "none",
            0.0,
            0.0,
            overhead_ms=0.25,
            cached_prompt_tokens=2,
        )
        await store.add([new])
        summary = await store.summary("2026-11-18")
        recent = await store.recent(2)
    finally:
        await store.aclose()
    assert summary.requests == 2
    assert [(r.request_id, r.overhead_ms) for r in recent] == [("new", 0.25), ("old", 0.0)]
    assert summary.overhead.max_ms == 0.25
    assert [r.cached_prompt_tokens for r in recent] == [2, 0]
    assert summary.cached_prompt_tokens == 2
