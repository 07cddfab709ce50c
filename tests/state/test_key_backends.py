"""Every key store passes the same tests: add, unique active names, revoke, what a second process sees."""

from __future__ import annotations

import stat

import pytest

from gateway.state.keys.memory import MemoryKeyStore
from gateway.state.keys.redis import RedisKeyStore
from gateway.state.keys.sqlite import SqliteKeyStore
from gateway.state.keys.store import ApiKey, KeyNameTaken, KeyStore
from gateway.state.keys.table import KeyTable
from gateway.state.keys.token import new_token
from tests.state.backends import Closer, Site


def open_store(where: Site) -> KeyStore:
    if where.backend == "redis":
        return RedisKeyStore(where.redis, prefix=where.prefix)
    if where.backend == "sqlite":
        return SqliteKeyStore(where.path / "keys.sqlite3")
    return MemoryKeyStore()


@pytest.fixture
def store(where: Site, closing: Closer) -> KeyStore:
    return closing(open_store(where))


def make(name: str, created_at: float, **policy: object) -> tuple[str, ApiKey]:
    made = new_token()
    return made.token, ApiKey(name, made.key_id, made.secret_sha256, created_at=created_at, **policy)  # type: ignore[arg-type]


async def test_keys_come_back_with_their_policy_oldest_first(store: KeyStore) -> None:
    _, desk = make("desk-1", 2.0, tasks=("trend", "sentiment"), local_only=True, daily_tokens=500, rpm=7)
    _, ops = make("ops", 1.0, admin=True)
    await store.add(desk)
    await store.add(ops)
    assert await store.all() == [ops, desk]


async def test_an_active_name_is_taken_until_revoked(store: KeyStore) -> None:
    _, first = make("desk-1", 1.0)
    _, second = make("desk-1", 2.0)
    await store.add(first)
    with pytest.raises(KeyNameTaken):
        await store.add(second)
    assert await store.revoke("desk-1", at=5.0)
    assert not await store.revoke("desk-1", at=6.0)  # nothing active left to revoke
    await store.add(second)
    keys = await store.all()
    assert [(k.key_id, k.revoked_at) for k in keys] == [(first.key_id, 5.0), (second.key_id, None)]


async def test_a_second_store_on_the_same_state_sees_adds_and_revokes(where: Site, closing: Closer) -> None:
    if where.backend == "memory":
        pytest.skip("memory keys live in one process")
    writer, reader = closing(open_store(where)), closing(open_store(where))
    token, key = make("desk-1", 1.0)
    table = KeyTable(reader, refresh_s=60)
    await table.load()
    assert not table.enabled
    await writer.add(key)
    await table.load()
    assert table.enabled and table.authenticate(token).name == "desk-1"
    await writer.revoke("desk-1", at=2.0)
    await table.load()
    assert table.enabled and table.policy("desk-1") is None


async def test_the_sqlite_file_is_readable_by_its_owner_only(where: Site, closing: Closer) -> None:
    if where.backend != "sqlite":
        pytest.skip("file permissions are SQLite's")
    store = closing(open_store(where))
    await store.add(make("desk-1", 1.0)[1])
    assert stat.S_IMODE((where.path / "keys.sqlite3").stat().st_mode) == 0o600
