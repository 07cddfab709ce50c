"""The layers are checked, not just drawn: import-linter's contracts (pyproject.toml) hold, and a stray import fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--no-logo"],
        check=False,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_layer_contract_is_kept() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_an_import_against_the_layers_fails_naming_it(tmp_path: Path) -> None:
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("gateway", "local_models", "finetune"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "gateway" / "state" / "open.py").open("a") as source:
        source.write("\nfrom gateway.routing import policy  # noqa: E402 - the stray import under test\n")
    with (tmp_path / "local_models" / "echo.py").open("a") as source:
        source.write("\nfrom gateway.config import Config  # noqa: E402 - the stray import under test\n")

    done = lint_imports(tmp_path)

    assert done.returncode != 0
    assert "gateway.state is not allowed to import gateway.routing" in done.stdout
    assert "gateway.state.open -> gateway.routing.policy" in done.stdout
    assert "local_models.echo -> gateway.config" in done.stdout
