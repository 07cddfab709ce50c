"""npm for the tests that run Node: install a folder's locked packages once, skip cleanly without npm.

`npm ci` runs only when the folder's node_modules is missing or older than its package-lock.json, so a
second run (and CI after the first test that needs it) starts at once. Packages come from the npm
registry through npm's own cache (~/.npm); install scripts are not run (none of the packages needs one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def npm() -> str:
    """The npm executable, or skip the test saying what is missing."""
    found = shutil.which("npm")
    if found is None or shutil.which("node") is None:
        pytest.skip("npm/node not on PATH: install Node.js 20 and npm for the proto checks and the TypeScript client")
    return found


def npm_ci(folder: Path) -> Path:
    """Install `folder`'s package-lock.json into folder/node_modules when stale; return its .bin folder."""
    lock = folder / "package-lock.json"
    marker = folder / "node_modules" / ".package-lock.json"  # npm rewrites it on every install
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run(
            [npm(), "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"npm ci in {folder} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    else:
        npm()
    return folder / "node_modules" / ".bin"
