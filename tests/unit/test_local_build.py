"""[local] backend = "vllm" | "ollama" builds the HTTP backends from their config sections, touching nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.local import build_local_backend
from gateway.config import ConfigError, load_config


async def test_vllm_backend_from_config(tmp_path: Path) -> None:
    from local_models.vllm_backend import VllmBackend

    cfg = load_config(
        overrides={
            "local.backend": "vllm",
            "local.vllm.base_url": "http://127.0.0.1:9",
            "local.vllm.served_model_name": "base",
            "local.vllm.max_model_len": 4096,
            "local.vllm.max_in_flight": 7,
        },
        env={"HOME": str(tmp_path)},
    )
    backend = build_local_backend(cfg, lambda size, seconds: None)
    try:
        assert isinstance(backend, VllmBackend)
        assert (backend.name, backend.model, backend.context_length) == ("vllm", "base", 4096)
        assert backend.load().max_in_flight == 7
    finally:
        await backend.aclose()


async def test_ollama_backend_from_config(tmp_path: Path) -> None:
    from local_models.ollama_backend import OllamaBackend

    cfg = load_config(
        overrides={"local.backend": "ollama", "local.ollama.model": "smollm2:135m", "local.ollama.keep_alive": "-1"},
        env={"HOME": str(tmp_path)},
    )
    backend = build_local_backend(cfg, lambda size, seconds: None)
    try:
        assert isinstance(backend, OllamaBackend)
        assert (backend.name, backend.model) == ("ollama", "smollm2:135m")
    finally:
        await backend.aclose()


def test_unknown_keys_in_the_new_sections_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"local\.vllm\.base_ur"):
        load_config(overrides={"local.vllm.base_ur": "x"}, env={"HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match=r"local\.backend"):
        load_config(overrides={"local.backend": "llamacpp"}, env={"HOME": str(tmp_path)})
