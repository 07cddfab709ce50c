"""API keys: the token format, and the table the doors check tokens against."""

from __future__ import annotations

import pytest

from gateway.core.errors import Unauthenticated
from gateway.state.keys import token
from gateway.state.keys.memory import MemoryKeyStore
from gateway.state.keys.store import ApiKey
from gateway.state.keys.table import KeyTable


def test_a_new_token_parses_back_to_its_id_and_a_secret_of_the_stored_hash() -> None:
    made = token.new_token()
    parsed = token.parse(made.token)
    assert parsed is not None and parsed[0] == made.key_id
    assert token.secret_matches(parsed[1], made.secret_sha256)
    assert made.secret_sha256 == token.hash_secret(parsed[1]) and parsed[1] not in made.secret_sha256
    assert len(parsed[1]) >= 43  # 32 random bytes


@pytest.mark.parametrize(
    "bad",
    ["", "gw_", "gw_zzzzzzzzzzzz_" + "a" * 43, "sk-" + "a" * 48, "gw_0123456789ab_" + "a" * 200, "gw_0123456789ab_a b"],
)
def test_anything_else_does_not_parse(bad: str) -> None:
    assert token.parse(bad) is None


async def table_with(*keys: tuple[str, ApiKey]) -> KeyTable:
    store = MemoryKeyStore()
    for _, key in keys:
        await store.add(key)
    table = KeyTable(store, refresh_s=60)
    await table.load()
    return table


def key(name: str, **policy: object) -> tuple[str, ApiKey]:
    made = token.new_token()
    return made.token, ApiKey(name, made.key_id, made.secret_sha256, **policy)  # type: ignore[arg-type]


async def test_the_table_is_off_without_keys_and_names_the_holder_of_a_good_token() -> None:
    assert not (await table_with()).enabled
    good, desk = key("desk-1", rpm=3)
    table = await table_with((good, desk), key("ops", admin=True))
    assert table.enabled
    assert table.authenticate(good) == desk
    assert table.policy("ops") is not None and table.policy("ops").admin  # type: ignore[union-attr]


async def test_wrong_and_revoked_tokens_are_refused_without_repeating_them() -> None:
    good, desk = key("desk-1")
    store = MemoryKeyStore()
    await store.add(desk)
    table = KeyTable(store, refresh_s=60)
    await table.load()
    made = token.new_token()
    parsed = token.parse(good)
    assert parsed is not None
    wrong_secret = f"gw_{parsed[0]}_{made.token.rsplit('_', 1)[-1]}"
    for bad in (made.token, wrong_secret, "not-a-key"):
        with pytest.raises(Unauthenticated) as caught:
            table.authenticate(bad)
        assert bad not in caught.value.message
    await store.revoke("desk-1", at=1.0)
    await table.load()
    with pytest.raises(Unauthenticated, match="'desk-1' has been revoked") as caught:
        table.authenticate(good)
    assert good not in caught.value.message
    assert table.enabled  # revoking the last key does not turn authentication off
