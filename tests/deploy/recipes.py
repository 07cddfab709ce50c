"""The deployment recipes under deploy/, read the way their tools read them: systemd units, TOML configs,
YAML manifests; and the tools' binaries, which a missing install skips outside CI and fails in it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
DOCKER = DEPLOY / "docker"
COMPOSE = DEPLOY / "compose"
K8S = DEPLOY / "k8s"

Unit = dict[str, dict[str, list[str]]]  # section -> key -> every value, in order (keys may repeat)


def require_tool(name: str, hint: str) -> str:
    """The tool's path: the venv's bin folder first (pip-installed binaries), then PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.is_file() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed ({hint})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must have it", pytrace=False)
        pytest.skip(message)
    return found


def read_unit(path: Path) -> Unit:
    """A systemd unit file: comments dropped, backslash continuations joined, repeated keys kept."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert len(values) == 1, f"[{section}] {key}= should be set once, found {values}"
    return values[0]


def exec_start(unit: Unit) -> list[str]:
    return shlex.split(one(unit, "Service", "ExecStart"))


def units() -> list[Path]:
    return sorted(SYSTEMD.glob("*.service"))


def configs() -> list[Path]:
    """Every gateway config TOML a recipe ships (the Kubernetes ones become ConfigMaps)."""
    return sorted(DEPLOY.rglob("*.toml"))


def load(path: Path) -> Config:
    return load_config(path, env={})


def yaml_documents(path: Path) -> Iterator[dict[str, Any]]:
    for document in yaml.safe_load_all(path.read_text()):
        if document is not None:
            yield document


def env_names(path: Path) -> set[str]:
    """The variable names an env file sets (commented-out lines do not count)."""
    names = set()
    for line in path.read_text().splitlines():
        name, sep, _ = line.strip().partition("=")
        if sep and name.replace("_", "").isalnum() and name.upper() == name:
            names.add(name)
    return names
