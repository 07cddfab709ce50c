"""The local tier from config: the configured backend and the adapter registry.

Each backend's module is imported only when it is configured: torch and
transformers load only for the transformers backend; echo imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import Config
from gateway.core.contracts import LocalBackend

if TYPE_CHECKING:
    from local_models.adapters import AdapterRegistry

BatchObserver = Callable[[int, float], None]


def build_local_backend(config: Config, on_batch: BatchObserver) -> LocalBackend:
    """Build the configured local backend (the embedded model is converted on first use)."""
    kind = config.local.backend
    if kind in ("vllm", "ollama"):  # HTTP backends: settings and (for vLLM) the supervised server
        from gateway.app import local_http

        return local_http.build_vllm_backend(config) if kind == "vllm" else local_http.build_ollama_backend(config)
    if kind == "llamacpp":  # llama.cpp in this process (no torch)
        from gateway.app.local_llamacpp import build_llamacpp_backend

        return build_llamacpp_backend(config)
    if kind == "echo":
        from local_models.echo import EchoBackend

        echo = config.local.echo
        return EchoBackend(
            delay_ms=echo.delay_ms,
            max_in_flight=echo.max_in_flight,
            tail_share=echo.tail_share,
            tail_ms=echo.tail_ms,
            report_delay=echo.report_delay,
        )
    from local_models.model_store import EMBEDDED_NAME, ensure_embedded_model
    from local_models.transformers_backend import TransformersBackend, TransformersSettings

    tcfg = config.local.transformers
    model_dir = Path(tcfg.model_dir) if tcfg.model_dir else ensure_embedded_model(Path(config.cache_dir))
    settings = TransformersSettings(
        model_dir=model_dir,
        model_name=model_dir.name if tcfg.model_dir else EMBEDDED_NAME,
        threads=tcfg.threads,
        max_batch=tcfg.max_batch,
        max_wait_s=tcfg.max_wait_ms / 1000,
        max_in_flight=tcfg.max_in_flight,
        top_logprobs=tcfg.top_logprobs,
        label_fast_path=tcfg.label_fast_path,
        prefix_cache=tcfg.prefix_cache,
        prefill_threads=tcfg.prefill_threads,
        quantize_int8=tcfg.quantize_int8,
    )
    return TransformersBackend(settings, on_batch=on_batch)


def served_base_dir(config: Config) -> Path | None:
    """The HF folder of the base model the local tier serves, when its weights are on this box."""
    kind = config.local.backend
    if kind == "transformers":
        from local_models.model_store import ensure_embedded_model

        tcfg = config.local.transformers
        return Path(tcfg.model_dir) if tcfg.model_dir else ensure_embedded_model(Path(config.cache_dir))
    if kind == "vllm":
        from gateway.app import local_http

        return local_http.vllm_model_dir(config)
    if kind == "llamacpp":
        from gateway.app.local_llamacpp import llamacpp_base_dir

        return llamacpp_base_dir(config)
    return None  # echo, ollama: nothing to hash here


def open_adapter_registry(config: Config, base_name: str) -> AdapterRegistry:
    """The adapter cards under [adapters] dir, checked against the served base model's content hash."""
    from local_models.adapters import AdapterRegistry, model_content_hash

    base = served_base_dir(config) if config.adapters.check_base else None
    registry = AdapterRegistry(
        Path(config.adapters.dir),
        base_sha256=model_content_hash(base) if base is not None else None,
        base_name=base_name,
        served_by=config.local.backend,  # a card measured on the other path is served with a warning
    )
    registry.refresh()
    return registry
