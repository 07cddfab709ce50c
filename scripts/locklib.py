"""Read the pip-format locks that `make lock` writes (requirements.lock, deploy/lock/*.lock).

A lock entry is `name==version` followed by its `--hash=sha256:...` options and `# via` comments;
markers (`; python_version ...`) may follow the version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"

_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[^\s;\\]+)")
_HASH = re.compile(r"--hash=(sha256:[0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Locked:
    name: str  # normalised (PEP 503)
    version: str
    hashes: tuple[str, ...]

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"

    def requirement(self) -> str:
        """The entry as one requirements-file line, for `pip --require-hashes`."""
        return " ".join([self.pin, *(f"--hash={h}" for h in self.hashes)])


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, Locked]:
    """Every entry of a lock, by normalised name."""
    entries: dict[str, Locked] = {}
    current: tuple[str, str] | None = None
    hashes: list[str] = []

    def close() -> None:
        if current is not None:
            entries[current[0]] = Locked(current[0], current[1], tuple(hashes))

    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ENTRY.match(line)
        if match:
            close()
            current, hashes = (normalise(match["name"]), match["version"]), []
        hashes.extend(_HASH.findall(line))
    close()
    return entries
