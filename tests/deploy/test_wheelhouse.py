"""`make wheelhouse` carries what an offline box installs: scripts/wheelhouse.py downloads locked wheels with
their hashes checked, and a fresh venv installs them with `--no-index` alone (docs/deploy.md).

The full lock is ~1 GB (torch alone is 190 MB), so CI carries a subset that is closed under dependencies:
the gateway's own runtime requirements (no extras), read from the installed metadata, plus setuptools to
build the project. The venv then installs the project from the repository and imports its server."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from tests.locks import ROOT, locked_versions

PROJECT = "trading-inference-gateway"


def runtime_closure() -> set[str]:
    """The project's requirements without extras, and theirs, as installed here (markers evaluated)."""
    seen: set[str] = set()
    pending = [PROJECT]
    while pending:
        name = pending.pop()
        for spec in importlib.metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = requirement.name.lower().replace("_", "-")
            if key not in seen:
                seen.add(key)
                pending.append(key)
    return seen


def run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done


def test_a_wheelhouse_installs_the_gateway_with_no_index(tmp_path: Path) -> None:
    names = sorted(runtime_closure() | {"setuptools"})
    assert {"grpcio", "protobuf", "pydantic", "aiohttp"} <= set(names)
    assert set(names) <= locked_versions().keys(), "a runtime requirement is missing from requirements.lock"
    # Only what the command line says: not this machine's pip.conf with its own wheel folders and indexes.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    env.pop("PIP_FIND_LINKS", None)
    house = tmp_path / "wheelhouse"

    built = run(
        [sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), "--out", str(house), "--only", *names], env, tmp_path
    )
    assert f"{len(names)} wheels" in built.stdout
    assert len(list(house.glob("*.whl"))) == len(names)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], env, tmp_path)
    python = str(venv / "bin" / "python")
    offline = ["--no-index", "--find-links", str(house), "--disable-pip-version-check", "-q"]
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            *offline,
            "--require-hashes",
            "--no-deps",
            "-r",
            str(house / "requirements.lock"),
        ],
        env,
        tmp_path,
    )
    run([python, "-m", "pip", "install", *offline, "--no-deps", "--no-build-isolation", str(ROOT)], env, tmp_path)

    probe = "import gateway.api.servicer, grpc, importlib.metadata as m; print(m.version('grpcio'))"
    # From tmp_path, so that the installed copy is imported, not the repository's.
    done = run([python, "-c", probe], {**env, "PYTHONPATH": ""}, tmp_path)
    assert done.stdout.strip() == locked_versions()["grpcio"]
