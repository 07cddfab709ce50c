"""The gateway's import path stays light: no torch unless an in-process backend is configured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_server_and_echo_backend_does_not_import_torch() -> None:
    code = (
        "import sys, gateway.app.server, gateway.cli, local_models.echo\n"
        "heavy = [m for m in ('torch', 'transformers', 'openai', 'anthropic') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
