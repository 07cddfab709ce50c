"""The TypeScript client (clients/ts) builds with tsc and passes its node:test suite against a real gateway.

`npm test` starts its own gateway process (clients/ts/test/gateway.ts) with this Python; npm packages
come from clients/ts/package-lock.json, installed once into clients/ts/node_modules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.npm import ROOT, npm, npm_ci

TS = ROOT / "clients" / "ts"


def run_npm(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_PYTHON": sys.executable}
    return subprocess.run([npm(), *args], cwd=TS, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_typescript_client_builds_and_passes_against_a_real_gateway() -> None:
    npm_ci(TS)
    built = run_npm("run", "build")
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]

    done = run_npm("test")

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-8000:]
    passed = re.search(r"^# pass (\d+)$", done.stdout, re.MULTILINE)
    failed = re.search(r"^# fail (\d+)$", done.stdout, re.MULTILINE)
    assert passed and failed, output[-4000:]
    assert int(failed.group(1)) == 0 and int(passed.group(1)) >= 10, output[-4000:]
