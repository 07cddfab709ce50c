"""[local.vllm] and [local.ollama] -> backend settings, the vLLM launch, and the built backends.

The one place the HTTP local backends meet the config: the serve script, the
gateway (gateway/app/local.py) and the tests all build from here, so a flag
means the same thing everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.core.contracts import AdapterRef, LocalBackend

if TYPE_CHECKING:
    from local_models.vllm_server import VllmLaunch

ROOT = Path(__file__).resolve().parents[2]


def vllm_api_key(config: Config, env: Mapping[str, str]) -> str | None:
    name = config.local.vllm.api_key_env
    return (env.get(name) or None) if name else None


def vllm_model_dir(config: Config) -> Path:
    """The HF folder vLLM serves: [local.vllm] model_dir, else the embedded model (converted on first use)."""
    if config.local.vllm.model_dir:
        return Path(config.local.vllm.model_dir)
    from local_models.model_store import ensure_embedded_model

    return ensure_embedded_model(Path(config.cache_dir))


def vllm_adapters(config: Config, model_dir: Path) -> tuple[AdapterRef, ...]:
    """Adapters listed at start (--lora-modules): the newest card per task under [adapters] dir."""
    directory = Path(config.adapters.dir)
    if not directory.is_dir():
        return ()
    from local_models.adapters import model_content_hash
    from local_models.vllm_server import adapter_refs

    return adapter_refs(directory, model_content_hash(model_dir) if config.adapters.check_base else None)


def vllm_launch(config: Config, env: Mapping[str, str], *, root: Path = ROOT) -> VllmLaunch:
    """The command line, environment and adapters vLLM is started with for this config."""
    from local_models.vllm_server import VllmLaunch, find_vllm_python, split_base_url

    v = config.local.vllm
    model_dir = vllm_model_dir(config)
    host, port = split_base_url(v.base_url)
    return VllmLaunch(
        python=find_vllm_python(v.python, env, root),
        model_dir=str(model_dir),
        served_model_name=v.served_model_name,
        host=host,
        port=port,
        dtype=v.dtype,
        max_model_len=v.max_model_len,
        max_num_seqs=v.max_num_seqs,
        max_loras=v.max_loras,
        max_lora_rank=v.max_lora_rank,
        max_logprobs=v.max_logprobs,
        cpu_kvcache_gib=v.cpu_kvcache_gib,
        api_key=vllm_api_key(config, env),
        extra_args=tuple(v.extra_args),
        adapters=vllm_adapters(config, model_dir),
    )


def build_vllm_backend(config: Config, env: Mapping[str, str] | None = None) -> LocalBackend:
    """The vLLM backend; with supervise = true, starts vLLM first and blocks until it is healthy."""
    from local_models.vllm_backend import VllmBackend, VllmSettings
    from local_models.vllm_server import VllmSupervisor

    env = os.environ if env is None else env
    v = config.local.vllm
    supervisor = None
    if v.supervise:
        launch = vllm_launch(config, env)
        supervisor = VllmSupervisor(
            launch,
            log_path=Path(config.cache_dir) / "logs" / f"vllm-{launch.port}.log",
            startup_timeout_s=v.startup_timeout_s,
            restart_backoff_s=v.restart_backoff_s,
            env=env,
        )
        supervisor.start()
    settings = VllmSettings(
        base_url=v.base_url,
        model=v.served_model_name,
        api_key=vllm_api_key(config, env),
        timeout_s=v.timeout_s,
        connect_timeout_s=v.connect_timeout_s,
        max_in_flight=v.max_in_flight,
        top_logprobs=v.top_logprobs,
        label_top_logprobs=v.label_top_logprobs,
        metrics_poll_s=v.metrics_poll_s,
        metrics_stale_s=v.metrics_stale_s,
        max_waiting=v.max_waiting,
        kv_cache_full=v.kv_cache_full,
        context_length=v.max_model_len,
    )
    return VllmBackend(settings, supervisor=supervisor)


def build_ollama_backend(config: Config) -> LocalBackend:
    from local_models.ollama_backend import OllamaBackend, OllamaSettings

    o = config.local.ollama
    settings = OllamaSettings(
        host=o.host,
        model=o.model,
        keep_alive=o.keep_alive,
        timeout_s=o.timeout_s,
        max_in_flight=o.max_in_flight,
        parallel=o.parallel,
        top_logprobs=o.top_logprobs,
        label_top_logprobs=o.label_top_logprobs,
        require_logprobs=o.require_logprobs,
        context_length=o.context_length,
        ps_poll_s=o.ps_poll_s,
    )
    return OllamaBackend(settings)
