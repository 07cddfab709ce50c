"""The key table the doors check against: an in-memory copy of the key store, refreshed in the background.

Checking a key is a dict lookup and one constant-time hash comparison, never
a store read on the request path. The copy is re-read every `refresh_s`
seconds, so a key created or revoked by another process (or replica) counts
here within `refresh_s` (the revocation latency). When a re-read fails the
last copy stays in use and a warning is logged.

Authentication is on as soon as any key exists, revoked ones included: revoking
the last key does not open the door again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.core.errors import Unauthenticated
from gateway.state.keys import token
from gateway.state.keys.store import ApiKey, KeyStore

log = logging.getLogger(__name__)
_NO_HASH = "0" * 64  # compared against when the id is unknown, so both paths do the same work


@dataclass(frozen=True, slots=True)
class KeySnapshot:
    by_id: dict[str, ApiKey] = field(default_factory=dict)
    active: dict[str, ApiKey] = field(default_factory=dict)  # by name

    @staticmethod
    def of(keys: Sequence[ApiKey]) -> KeySnapshot:
        return KeySnapshot({k.key_id: k for k in keys}, {k.name: k for k in keys if k.active})


class KeyTable:
    def __init__(self, store: KeyStore, *, refresh_s: float) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._snapshot = KeySnapshot()
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Read the store now (the first read must succeed: a gateway that cannot read its keys does not start)."""
        self._snapshot = KeySnapshot.of(await self._store.all())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._refresh(), name="key-table")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def enabled(self) -> bool:
        """Whether requests need a key: any key exists (revoked ones included)."""
        return bool(self._snapshot.by_id)

    def policy(self, name: str) -> ApiKey | None:
        """The active key called `name` (its tasks, quotas and role); None when there is none."""
        return self._snapshot.active.get(name)

    def authenticate(self, presented: str) -> ApiKey:
        """The active key this token belongs to; Unauthenticated otherwise. Messages never contain the token."""
        parsed = token.parse(presented)
        if parsed is None:
            raise Unauthenticated("invalid API key: expected 'authorization: Bearer gw_<id>_<secret>'")
        key_id, secret = parsed
        key = self._snapshot.by_id.get(key_id)
        matches = token.secret_matches(secret, key.secret_sha256 if key is not None else _NO_HASH)
        if key is None or not matches:
            raise Unauthenticated("invalid API key")
        if not key.active:
            raise Unauthenticated(f"API key '{key.name}' has been revoked; ask for a new one")
        return key

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                self._snapshot = KeySnapshot.of(await self._store.all())
            except Exception as exc:  # noqa: BLE001 - keep serving with the last table
                log.warning("reading the API keys failed; using the last copy", extra={"error": repr(exc)})
