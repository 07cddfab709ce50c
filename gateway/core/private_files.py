"""Files and folders the gateway creates are its owner's alone: 0600 and 0700, whatever the umask.

The state files hold answer text (the response cache, local-only answers
included), prompt excerpts (usage records with `record_prompts`), training rows,
API-key hashes and budgets; an exported file of training rows holds prompts.
Existing files are made owner-only when this user owns them (a file from an
older version, or one SQLite made beside its database); folders that already
exist are left as they are (a state_dir may live under a shared parent).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TextIO

OWNER_ONLY = 0o600
OWNER_ONLY_DIR = 0o700


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents, each 0700; existing folders stay as they are."""
    missing: list[Path] = []
    for each in (folder, *folder.parents):
        if each.exists():
            break
        missing.append(each)
    for each in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process made it meanwhile
            each.mkdir(mode=OWNER_ONLY_DIR)
        with contextlib.suppress(PermissionError):
            os.chmod(each, OWNER_ONLY_DIR)


def make_private_file(path: Path, mode: int = OWNER_ONLY) -> None:
    """Create `path` with `mode` when it is missing (its folder too), and narrow it to `mode` when it exists."""
    make_private_dirs(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, mode))  # no-op on an existing file
    narrow(path, mode)


def narrow(path: Path, mode: int = OWNER_ONLY) -> None:
    """Make an existing file `mode` when this user owns it; a missing file, or another user's, is left alone."""
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if path.stat().st_uid == os.getuid():
            os.chmod(path, mode)


def open_private(path: Path) -> TextIO:
    """`path` opened for writing text (truncated), owner-only from the moment it exists."""
    make_private_file(path)
    return path.open("w", encoding="utf-8")
