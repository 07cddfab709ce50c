"""[local] backend = "vllm" | "ollama" | "llamacpp" builds each backend from its config section."""

from __future__ import annotations

import subprocess
import sys
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
        load_config(overrides={"local.backend": "mlx"}, env={"HOME": str(tmp_path)})


def test_llamacpp_backend_from_config_never_imports_torch(tmp_path: Path) -> None:
    """The llama.cpp backend builds from [local.llamacpp] in a fresh process, serves, and leaves torch unloaded."""
    code = (
        "import asyncio, sys\n"
        "from gateway.app.local import build_local_backend\n"
        "from gateway.config import load_config\n"
        "from gateway.core.contracts import BackendCall, Message, Role\n"
        "cfg = load_config(overrides={'local.backend': 'llamacpp', 'local.llamacpp.slots': 2,\n"
        "    'local.llamacpp.context_length': 512, 'local.llamacpp.max_in_flight': 5,\n"
        f"    'adapters.dir': {str(tmp_path / 'none')!r}}}, env={{'HOME': {str(tmp_path)!r}}})\n"
        "backend = build_local_backend(cfg, lambda size, seconds: None)\n"
        "async def main():\n"
        "    answer = await backend.generate(BackendCall('b', (Message(Role.USER, 'Hi'),), max_tokens=2))\n"
        "    await backend.aclose()\n"
        "    return answer\n"
        "answer = asyncio.run(main())\n"
        "print(backend.name, backend.model, backend.context_length, backend.load().max_in_flight, len(answer.tokens))\n"
        "print('heavy:', ','.join(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    described, heavy = done.stdout.strip().splitlines()[-2:]
    assert described == "llamacpp smollm2-135m-instruct 512 5 2"
    assert heavy.strip() == "heavy:"
