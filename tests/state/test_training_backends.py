"""Every training store passes the same tests: rows kept in order, status, trimming by age and count, purge."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.state.learning.redis import RedisTrainingStore
from gateway.state.learning.sqlite import SqliteTrainingStore
from gateway.state.learning.store import AuditRecord, Tally, TrainingRow, TrainingStore
from tests.state.backends import Closer, Site

T0 = 1_795_000_000.0  # 2026-11-18T08:26:40Z
pytestmark = pytest.mark.parametrize("where", ["sqlite", "redis"], indirect=True)
ROW = TrainingRow(
    ts=T0,
    task="sentiment",
    request_id="r0",
    client_id="desk-1",
    messages=(("system", "Answer bullish, bearish or neutral."), ("user", "Chipmaker beats estimates")),
    answer="Bullish.",
    label="bullish",
    provider="openai",
    model="gpt-test",
    escalation="low_confidence",
    local_answer="neutral",
    local_confidence=0.41,
)


def row(i: int, **fields: object) -> TrainingRow:
    return replace(ROW, ts=T0 + i, request_id=f"r{i}", **fields)  # type: ignore[arg-type]


@pytest.fixture
def store(where: Site, closing: Closer) -> TrainingStore:
    if where.backend == "redis":
        return closing(RedisTrainingStore(where.redis, prefix=where.prefix))
    return closing(SqliteTrainingStore(where.path / "training.sqlite3"))


async def test_rows_come_back_whole_and_oldest_first(store: TrainingStore) -> None:
    await store.add([row(2), row(0), row(1, task="pattern", label="")])
    assert [r.request_id for r in await store.rows("sentiment")] == ["r0", "r2"]
    assert await store.rows("sentiment") == [row(0), row(2)]  # every field, messages included
    assert await store.rows("unknown") == []


async def test_status_shows_rows_label_balance_and_date_range(store: TrainingStore) -> None:
    await store.add([row(0), row(5, label="bearish"), row(9, label="bullish"), row(3, task="pattern", label="")])
    by_task = {s.task: s for s in await store.status()}
    assert by_task["sentiment"].rows == 3 and by_task["sentiment"].labels == {"bearish": 1, "bullish": 2}
    assert (by_task["sentiment"].first_ts, by_task["sentiment"].last_ts) == (T0, T0 + 9)
    assert by_task["pattern"].rows == 1 and by_task["pattern"].labels == {"": 1}


async def test_trim_drops_old_rows_then_the_oldest_beyond_the_cap_per_task(store: TrainingStore) -> None:
    await store.add([row(i) for i in range(10)] + [row(i, task="pattern") for i in range(10, 13)])
    removed = await store.trim(max_rows=4, older_than=T0 + 3)  # r0-r2 by age, then r3-r5 by count
    assert removed == 6
    assert [r.request_id for r in await store.rows("sentiment")] == ["r6", "r7", "r8", "r9"]
    assert len(await store.rows("pattern")) == 3


async def test_purge_one_task_or_all(store: TrainingStore) -> None:
    await store.add([row(0), row(1), row(2, task="pattern")])
    assert await store.purge("sentiment") == 2
    assert await store.rows("sentiment") == [] and len(await store.rows("pattern")) == 1
    assert await store.purge(None) == 1
    assert await store.status() == []


async def test_audits_are_tallied_per_task_threshold_and_window(store: TrainingStore) -> None:
    audits = [AuditRecord(T0 + i, "sentiment", 0.8, agreed=i % 4 != 0) for i in range(8)]  # 6 of 8 agree
    audits += [AuditRecord(T0 + 9, "sentiment", 0.85, agreed=False), AuditRecord(T0 + 9, "pattern", 0.8, True)]
    await store.add_audits(audits)
    assert await store.tally("sentiment", threshold=0.8, since=T0) == Tally(8, 6)
    assert await store.tally("sentiment", threshold=0.8, since=T0 + 4) == Tally(4, 3)  # T0+4 (no), 5, 6, 7
    assert await store.tally("sentiment", threshold=0.85, since=T0) == Tally(1, 0)
    assert await store.tally("pattern", threshold=0.8, since=T0) == Tally(1, 1)
    await store.trim(max_rows=100, older_than=T0 + 6)
    assert await store.tally("sentiment", threshold=0.8, since=0) == Tally(2, 2)
    await store.purge("sentiment")
    assert await store.tally("sentiment", threshold=0.85, since=0) == Tally(0, 0)


async def test_raised_thresholds_are_kept_and_go_with_a_purge(store: TrainingStore) -> None:
    assert await store.thresholds() == {}
    await store.set_threshold("sentiment", 0.82)
    await store.set_threshold("sentiment", 0.84)
    await store.set_threshold("sentiment@20261130-1524", 0.9)
    await store.set_threshold("sentiments", 0.7)  # another task whose name starts the same
    await store.set_threshold("pattern", 0.9)
    assert await store.thresholds() == {
        "sentiment": 0.84,
        "sentiment@20261130-1524": 0.9,
        "sentiments": 0.7,
        "pattern": 0.9,
    }
    await store.purge("sentiment")  # the task's own raise and each of its adapter versions'
    assert await store.thresholds() == {"sentiments": 0.7, "pattern": 0.9}
    await store.purge(None)
    assert await store.thresholds() == {}
