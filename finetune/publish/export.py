"""Adapter folders that vLLM and Ollama serve as they are, published atomically.

vLLM: `--enable-lora --lora-modules NAME=FOLDER` takes a plain PEFT LoRA folder
(adapter_config.json + adapter_model.safetensors); `check_vllm_folder` rejects what vLLM
would (other PEFT types, DoRA, extra trained modules, ranks above --max-lora-rank).
llama.cpp: the same LoRA as a GGUF file beside the PEFT files (`adapter_model.gguf`, in
llama.cpp's adapter layout: local_models/gguf_lora.py), which the llamacpp backend serves.
Ollama: a Modelfile beside the weights (`FROM` the base, `ADAPTER` that GGUF file, `SYSTEM`
the task's system prompt) for `ollama create NAME -f Modelfile`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# LoRA target modules vLLM supports for Llama-architecture models (SmolLM2 is one)
VLLM_LLAMA_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})


class ExportError(ValueError):
    pass


def check_vllm_folder(folder: Path, max_lora_rank: int = 64) -> list[str]:
    """Reasons vLLM would refuse the folder (empty when it serves it)."""
    problems = []
    config_path = folder / "adapter_config.json"
    if not config_path.is_file():
        return [f"{config_path} is missing"]
    if not (folder / "adapter_model.safetensors").is_file():
        problems.append("adapter_model.safetensors is missing")
    config = json.loads(config_path.read_text())
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}, vLLM serves LORA only")
    if config.get("use_dora"):
        problems.append("DoRA adapters are not served by vLLM")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']} (fully trained layers) are not supported")
    rank = int(config.get("r", 0))
    if not 0 < rank <= max_lora_rank:
        problems.append(f"rank {rank} is outside 1..{max_lora_rank} (start vLLM with --max-lora-rank >= {rank})")
    targets = config.get("target_modules") or []
    if isinstance(targets, str):
        problems.append(f"target_modules is the pattern {targets!r}; list the module names")
    elif not set(targets) <= VLLM_LLAMA_MODULES:
        problems.append(f"target modules {sorted(set(targets) - VLLM_LLAMA_MODULES)} are not LoRA-capable in vLLM")
    return problems


def write_gguf_adapter(folder: Path, base_folder: Path) -> list[str]:
    """Write the PEFT LoRA in `folder` as llama.cpp's GGUF adapter beside it; why it cannot (empty: written)."""
    from local_models.gguf_lora import GGUF_ADAPTER_FILE, GgufLoraError, base_shape_from_hf, write_gguf_lora

    try:
        write_gguf_lora(folder, folder / GGUF_ADAPTER_FILE, base_shape_from_hf(base_folder))
    except (GgufLoraError, OSError, KeyError, ValueError) as exc:
        return [f"no GGUF adapter for llama.cpp and Ollama: {exc}"]
    return []


def write_modelfile(folder: Path, base: str, system: str) -> Path:
    """An Ollama Modelfile: the base, this adapter (its GGUF file when there is one), and the task's system prompt."""
    from local_models.gguf_lora import GGUF_ADAPTER_FILE

    adapter = f"./{GGUF_ADAPTER_FILE}" if (folder / GGUF_ADAPTER_FILE).is_file() else "./"
    text = (
        "# ollama create <name> -f Modelfile  (run in this folder)\n"
        "# FROM must be the exact base the adapter was trained on (see card.json: base_model, base_model_sha256)\n"
        f"FROM {base}\n"
        f"ADAPTER {adapter}\n"
        f'SYSTEM """{system}"""\n'
        "PARAMETER temperature 0\n"
    )
    path = folder / "Modelfile"
    path.write_text(text)
    return path


def staging_dir(adapters_dir: Path, name: str, version: str) -> Path:
    """Where a version is written before publishing; the registry ignores dot-folders."""
    return adapters_dir / name / f".{version}.partial"


def publish(staging: Path, adapters_dir: Path, name: str, version: str) -> Path:
    """Move a finished folder into place in one rename, so a watcher never sees half a version."""
    final = adapters_dir / name / version
    if final.exists():
        raise ExportError(f"{final} already exists; versions are never overwritten")
    staging.rename(final)
    return final


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)
