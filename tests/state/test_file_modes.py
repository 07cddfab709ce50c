"""Every file the SQLite stores create is readable by its owner only (0600), and the folders they create 0700.

Each store the gateway opens (`open_state`: ledger, response cache, usage
records, training rows, rate limits, breakers, API keys, key quotas) writes once
under a umask that would give everyone read access, then the whole state folder
is checked; a file an older version left readable to others is narrowed on open.
`tests/integration/test_file_modes.py` checks the same of a running gateway.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config
from gateway.core.contracts import Usage
from gateway.state.cache.store import CachedAnswer
from gateway.state.keys.store import ApiKey
from gateway.state.learning.store import AuditRecord, TrainingRow
from gateway.state.open import open_state
from gateway.state.usage.store import UsageRecord

NOW = 1_795_000_000.0


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The umask most systems start with: files 0644 and folders 0755 unless the gateway says otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    """Every file and folder under `root` (and root itself), relative path -> permission bits."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


async def write_every_store(config: Config) -> None:
    state = open_state(config)
    try:
        await state.ledger.reserve("openai", 10, day="2026-11-18", limit=None)
        assert state.cache is not None
        await state.cache.put("k", CachedAnswer("up", "echo", "echo", "local", Usage(1, 1), "stop", 1.0, NOW), 60)
        record = UsageRecord(NOW, "r1", "desk", "", "local", "echo", "echo", "", 1, 1, 1.0, 1.0, "none", 0, 0, "hi")
        await state.usage.add([record])
        row = TrainingRow(NOW, "trend", "r1", "desk", (("user", "hi"),), "up", "up", "openai", "m", "rule", "", None)
        await state.training.add([row])
        await state.training.add_audits([AuditRecord(NOW, "trend", 0.6, True)])
        await state.rate_limits.try_acquire("openai", 10)
        await state.breakers.record_failure("openai")
        await state.keys.add(ApiKey("desk", "0123456789ab", "0" * 64))
        await state.key_quotas.reserve("desk", 10, day="2026-11-18", limit=None)
    finally:
        await state.aclose()


async def test_every_sqlite_store_creates_owner_only_files_and_folders(tmp_path: Path, open_umask: None) -> None:
    root = tmp_path / "private"  # missing: the stores create it, and state_dir below it
    await write_every_store(Config(state_dir=str(root / "state")))
    found = modes(root)
    expected_files = {
        "ledger.sqlite3",
        "response_cache.sqlite3",
        "usage.sqlite3",
        "training.sqlite3",
        "limits.sqlite3",
        "keys.sqlite3",
        "key_quotas.sqlite3",
    }
    assert expected_files <= {Path(name).name for name in found}, found
    loose = {name: oct(mode) for name, mode in found.items() if mode != (0o700 if (root / name).is_dir() else 0o600)}
    assert not loose, f"readable beyond the owner: {loose}"


async def test_a_file_an_older_version_left_readable_is_narrowed_on_open(tmp_path: Path, open_umask: None) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    old = state_dir / "response_cache.sqlite3"
    old.touch(mode=0o644)
    (state_dir / "response_cache.sqlite3-wal").touch(mode=0o644)
    await write_every_store(Config(state_dir=str(state_dir)))
    found = modes(state_dir)
    assert found.pop(".") == 0o755  # a folder that existed is the operator's: left alone
    assert found["response_cache.sqlite3"] == 0o600
    assert all(mode == 0o600 for mode in found.values()), found  # a folder that existed is the operator's: left alone
