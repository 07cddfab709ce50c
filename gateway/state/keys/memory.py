"""API keys in one process: for tests."""

from __future__ import annotations

import dataclasses

from gateway.state.keys.store import ApiKey, KeyNameTaken


class MemoryKeyStore:
    def __init__(self) -> None:
        self._keys: dict[str, ApiKey] = {}  # by key id, in insertion order

    async def add(self, key: ApiKey) -> None:
        if any(k.name == key.name and k.active for k in self._keys.values()):
            raise KeyNameTaken(key.name)
        self._keys[key.key_id] = key

    async def revoke(self, name: str, *, at: float) -> bool:
        for key in self._keys.values():
            if key.name == name and key.active:
                self._keys[key.key_id] = dataclasses.replace(key, revoked_at=at)
                return True
        return False

    async def all(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda k: (k.created_at, k.key_id))

    async def aclose(self) -> None:
        return None
