"""`python -m gateway keys create|list|revoke`: API keys in the store the config names.

They open the same store the gateway reads (SQLite under state_dir, or the
shared Redis), so they work with the gateway running or not; a running gateway
sees a change within [keys] refresh_s. `create` prints the key once: only the
hash of its secret is stored, so a lost key cannot be shown again (revoke it
and create another).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TextIO

from gateway.config import Config
from gateway.state.keys.store import ApiKey, KeyNameTaken, KeyStore
from gateway.state.keys.token import NAME_RULE, new_token, valid_name
from gateway.state.open import open_keys


class KeyCommandError(ValueError):
    """The command cannot be done as asked; the message says what to change."""


async def create(
    config: Config,
    name: str,
    out: TextIO,
    *,
    tasks: Sequence[str] = (),
    local_only: bool = False,
    daily_tokens: int = 0,
    rpm: int = 0,
    admin: bool = False,
) -> str:
    """Store a new key and print it once; returns the key."""
    if not valid_name(name):
        raise KeyCommandError(f"NAME '{name}': {NAME_RULE}")
    if daily_tokens < 0 or rpm < 0:
        raise KeyCommandError("--daily-tokens and --rpm must be 0 (no limit) or more")
    bad = [t for t in tasks if not t or "," in t]
    if bad:
        raise KeyCommandError("--tasks: give task names, e.g. --tasks trend sentiment")
    made = new_token()
    key = ApiKey(name, made.key_id, made.secret_sha256, tuple(tasks), local_only, daily_tokens, rpm, admin, time.time())
    async with _store(config) as store:
        try:
            await store.add(key)
        except KeyNameTaken:
            raise KeyCommandError(
                f"an active key is already called '{name}'; revoke it first (keys revoke {name}) or pick another name"
            ) from None
    out.write(f"{made.token}\n")
    return made.token


async def list_keys(config: Config, out: TextIO, *, revoked: bool = False) -> list[ApiKey]:
    """Print the keys (never the keys themselves): name, policy, created, revoked."""
    async with _store(config) as store:
        keys = [k for k in await store.all() if revoked or k.active]
    if not keys:
        out.write("no API keys: authentication is off\n" if not revoked else "no API keys\n")
        return keys
    out.write(
        f"{'name':<24} {'id':<12} {'role':<6} {'tasks':<20} {'local':<5} {'tokens/day':>10} {'rpm':>6}  created\n"
    )
    for k in keys:
        line = (
            f"{k.name:<24} {k.key_id:<12} {'admin' if k.admin else 'client':<6} {','.join(k.tasks) or 'all':<20} "
            f"{'yes' if k.local_only else 'no':<5} {k.daily_tokens or '-':>10} {k.rpm or '-':>6}  {_when(k.created_at)}"
        )
        out.write(line + (f"  revoked {_when(k.revoked_at)}" if k.revoked_at is not None else "") + "\n")
    return keys


async def revoke(config: Config, name: str, out: TextIO) -> None:
    async with _store(config) as store:
        if not await store.revoke(name, at=time.time()):
            raise KeyCommandError(f"no active key is called '{name}' (keys list shows them)")
    out.write(f"revoked '{name}'; running gateways refuse it within {config.keys.refresh_s:g} s\n")


@contextlib.asynccontextmanager
async def _store(config: Config) -> AsyncIterator[KeyStore]:
    store, redis = open_keys(config)
    try:
        yield store
    finally:
        await store.aclose()
        if redis is not None:
            await redis.aclose()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
