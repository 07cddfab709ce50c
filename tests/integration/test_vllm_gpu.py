"""On a GPU box (`make test-gpu`): the session's vLLM server runs on the GPU and is fast there."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest

from gateway.core.contracts import BackendCall, Message, Role
from local_models.vllm_backend import VllmBackend, VllmSettings
from tests.vllm_session import VllmTestServer, shared_vllm

pytestmark = pytest.mark.gpu


@pytest.fixture
def vllm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> VllmTestServer:
    if shutil.which("nvidia-smi") is None:
        pytest.skip("no NVIDIA GPU here (nvidia-smi not found): run on a GPU box with `make test-gpu`")
    return shared_vllm(request, tmp_path_factory.getbasetemp() / "vllm-session")


def gpu_pids() -> set[int]:
    query = ["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"]
    out = subprocess.run(query, check=True, capture_output=True, text=True).stdout
    return {int(line) for line in out.split() if line.strip().isdigit()}


def process_tree(root: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], check=True, capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        pid, ppid = (int(x) for x in line.split())
        children.setdefault(ppid, []).append(pid)
    tree, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            tree.add(child)
            todo.append(child)
    return tree


def test_vllm_engine_runs_on_the_gpu(vllm_server: VllmTestServer) -> None:
    pid = vllm_server.supervisor.pid
    assert pid is not None
    assert process_tree(pid) & gpu_pids(), "no vLLM process holds a CUDA context"


async def test_vllm_on_the_gpu_beats_the_cpu_build(vllm_server: VllmTestServer) -> None:
    backend = VllmBackend(VllmSettings(base_url=vllm_server.base_url, model=vllm_server.served_name))
    messages = (Message(Role.USER, "Count from 1 to 100, separated by commas."),)
    try:
        await backend.generate(BackendCall("warm", messages, max_tokens=8))
        started = time.perf_counter()
        completion = await backend.generate(BackendCall("r", messages, max_tokens=128))
        rate = completion.usage.completion_tokens / (time.perf_counter() - started)
    finally:
        await backend.aclose()
    assert rate > 50, f"{rate:.0f} tok/s on one stream; the CPU build here does ~13"
