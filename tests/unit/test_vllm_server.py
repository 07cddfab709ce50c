"""The vLLM command line from config, and the supervisor restarting a server that dies."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from gateway.app.local_http import vllm_launch
from gateway.config import load_config
from gateway.core.contracts import AdapterRef
from local_models.vllm_server import VllmLaunch, VllmSupervisor, find_vllm_python, wait_healthy
from tests.gateway_process import free_port
from tests.waiting import wait_until

# Stands in for `python -m vllm.entrypoints.openai.api_server`: answers /health on --port.
STUB = """
import http.server, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""


def test_command_has_the_working_cpu_flags_and_every_adapter() -> None:
    launch = VllmLaunch(
        python="/venv/bin/python",
        model_dir="/models/smollm2",
        served_model_name="smollm2",
        port=8123,
        adapters=(AdapterRef("trend", "v1", "/a/trend/v1"), AdapterRef("risk", "2", "/a/risk/2")),
        api_key="secret",
        extra_args=("--enforce-eager",),
    )
    command = launch.command()
    assert command[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    joined = " ".join(command)
    for flag in (
        "--model /models/smollm2",
        "--served-model-name smollm2",
        "--port 8123",
        "--dtype bfloat16",
        "--max-model-len 2048",
        "--enable-lora",
        "--max-lora-rank 8",
        "--max-loras 2",
    ):
        assert flag in joined
    assert command[command.index("--lora-modules") + 1 : command.index("--lora-modules") + 3] == [
        "trend@v1=/a/trend/v1",
        "risk@2=/a/risk/2",
    ]
    assert command[-1] == "--enforce-eager"
    assert "secret" not in joined and "secret" not in launch.describe()  # never in the process list
    env = launch.environment({"PATH": "/bin"})
    assert env["VLLM_API_KEY"] == "secret"
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1" and env["VLLM_CPU_OMP_THREADS_BIND"] == "auto"


def test_launch_follows_the_config(tmp_path: Path) -> None:
    config = load_config(
        overrides={
            "local.vllm.base_url": "http://127.0.0.1:9001",
            "local.vllm.model_dir": str(tmp_path),
            "local.vllm.served_model_name": "base",
            "local.vllm.dtype": "auto",
            "local.vllm.max_num_seqs": 16,
            "local.vllm.api_key_env": "MY_VLLM_KEY",
            "adapters.dir": str(tmp_path / "adapters"),  # not the checkout's artifacts/adapters
        },
        env={"HOME": str(tmp_path)},
    )
    launch = vllm_launch(config, {"MY_VLLM_KEY": "k", "VLLM_PYTHON": "/x/python"})
    assert (launch.port, launch.model_dir, launch.dtype, launch.api_key) == (9001, str(tmp_path), "auto", "k")
    assert launch.python == "/x/python"
    assert "--max-num-seqs" in launch.command()


def test_interpreter_discovery_order(tmp_path: Path) -> None:
    assert find_vllm_python("/configured", {"VLLM_PYTHON": "/env"}, tmp_path) == "/configured"
    assert find_vllm_python("", {"VLLM_PYTHON": "/env"}, tmp_path) == "/env"
    assert find_vllm_python("", {}, tmp_path) == sys.executable  # no .venv-vllm: this interpreter (GPU extra)
    venv_python = tmp_path / ".venv-vllm" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.touch()
    assert find_vllm_python("", {}, tmp_path) == str(venv_python)


@pytest.fixture
def stub_launch(tmp_path: Path) -> tuple[VllmLaunch, dict[str, str]]:
    module = tmp_path / "stub" / "vllm" / "entrypoints" / "openai"
    module.mkdir(parents=True)
    for folder in (module.parent.parent, module.parent, module):
        (folder / "__init__.py").touch()
    (module / "api_server.py").write_text(STUB)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "stub")}
    launch = VllmLaunch(python=sys.executable, model_dir="m", served_model_name="m", port=free_port())
    return launch, env


def test_supervisor_restarts_a_server_that_dies(tmp_path: Path, stub_launch: tuple[VllmLaunch, dict[str, str]]) -> None:
    launch, env = stub_launch
    supervisor = VllmSupervisor(
        launch, log_path=tmp_path / "vllm.log", startup_timeout_s=30, restart_backoff_s=0.1, env=env
    )
    threads_before = set(threading.enumerate())
    supervisor.start()
    (watcher,) = [t for t in threading.enumerate() if t not in threads_before and t.name == "vllm-supervisor"]
    try:
        first = supervisor.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        wait_until(
            lambda: supervisor.restarts >= 1 and supervisor.pid not in (None, first),
            timeout_s=30,
            what="the supervisor to start the server again",
            interval_s=0.1,
        )
        assert supervisor.restarts == 1 and supervisor.pid not in (None, first)
        wait_healthy(launch.base_url, 30)
    finally:
        supervisor.stop()
    assert supervisor.pid is None
    # stop() is final: the thread that restarts the server ends, and it restarted nothing more.
    watcher.join(30)
    assert not watcher.is_alive()
    assert supervisor.restarts == 1


def test_a_server_that_never_gets_healthy_fails_the_start_with_its_log(tmp_path: Path) -> None:
    launch = VllmLaunch(python=sys.executable, model_dir="m", served_model_name="m", port=free_port())
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}  # no vllm module there: the process exits at once
    supervisor = VllmSupervisor(launch, log_path=tmp_path / "vllm.log", startup_timeout_s=30, env=env)
    with pytest.raises(RuntimeError, match="exited while starting"):
        supervisor.start()
