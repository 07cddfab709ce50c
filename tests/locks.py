"""scripts/locklib.py (the reader of `make lock`'s files), for the tests; and a loader for other scripts."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    """scripts/<name>.py as a module (scripts/ is not a package)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def read_lock(path: Path) -> dict[str, object]:
    """Every entry of a lock by normalised name: `.version`, `.hashes`, `.requirement()`."""
    return script("locklib").read_lock(path)  # type: ignore[no-any-return]


def locked_versions(path: Path = ROOT / "requirements.lock") -> dict[str, str]:
    return {name: entry.version for name, entry in script("locklib").read_lock(path).items()}
