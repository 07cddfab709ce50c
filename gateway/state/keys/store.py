"""API keys as stored: a name, the hash of the secret, and the key's policy.

Names are unique among active keys; a revoked key keeps its row (so the table
stays on and its name shows in `keys list`) and its name can be given to a new
key. Implementations: memory.py (tests), sqlite.py (default, a file under
state_dir readable by its owner only), redis.py (shared by every replica).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol


class KeyNameTaken(ValueError):
    """An active key already has this name."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    key_id: str
    secret_sha256: str
    tasks: tuple[str, ...] = ()  # empty: every task
    local_only: bool = False  # never a remote call, whatever the request says
    daily_tokens: int = 0  # prompt + completion tokens per UTC day; 0 = no quota
    rpm: int = 0  # requests per minute; 0 = no limit
    admin: bool = False  # may read the dashboard, every caller's usage and the per-request records
    created_at: float = 0.0  # wall-clock seconds
    revoked_at: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @staticmethod
    def from_json(raw: str | bytes) -> ApiKey:
        data: dict[str, Any] = json.loads(raw)
        data["tasks"] = tuple(data.get("tasks", ()))
        return ApiKey(**data)


class KeyStore(Protocol):
    async def add(self, key: ApiKey) -> None:
        """Store a new key; KeyNameTaken when an active key has its name."""
        ...

    async def revoke(self, name: str, *, at: float) -> bool:
        """Revoke the active key called `name`; False when there is none."""
        ...

    async def all(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def aclose(self) -> None: ...
