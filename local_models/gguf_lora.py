"""A PEFT LoRA folder as a GGUF LoRA adapter in llama.cpp's layout, written with the `gguf` package.

llama.cpp loads a LoRA as its own GGUF file (`general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`), with one pair of tensors per adapted weight, named after the base
model's GGUF tensor: `blk.<i>.attn_q.weight.lora_a` (rank x in) and `...lora_b` (out x rank).
It scales each pair by alpha / rank, as PEFT does with lora_alpha / r.

Llama-architecture GGUF files store the query and key projections with their rows permuted
for llama.cpp's rotary layout (the HF -> GGUF conversion does it; the transformers GGUF loader
undoes it), so the B factor of q_proj and k_proj is permuted the same way here. The
transformers path trains and serves the HF layout; llama.cpp then sees the same adapter on its
own layout of the same weights.

Only numpy, safetensors and gguf are used: no torch, so the gateway can convert an adapter
that was published without its GGUF file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_ADAPTER_FILE = "adapter_model.gguf"
SUPPORTED_ARCHS = frozenset({"llama"})  # the q/k permutation below is Llama's (SmolLM2 is one)
_PEFT_NAME = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<factor>[AB])(?:\.default)?\.weight$")


class GgufLoraError(ValueError):
    """The adapter cannot be written as a llama.cpp LoRA; the message says why."""


@dataclass(frozen=True, slots=True)
class BaseShape:
    """What the conversion needs to know about the base model."""

    arch: str  # GGUF architecture name: "llama"
    n_layers: int
    n_head: int
    n_head_kv: int


def base_shape_from_hf(model_dir: Path) -> BaseShape:
    """The base model's shape from its Hugging Face config.json."""
    config = json.loads((model_dir / "config.json").read_text())
    model_type = str(config.get("model_type", ""))
    heads = int(config["num_attention_heads"])
    return BaseShape(
        arch=model_type,
        n_layers=int(config["num_hidden_layers"]),
        n_head=heads,
        n_head_kv=int(config.get("num_key_value_heads") or heads),
    )


def base_shape_from_gguf(model_file: Path) -> BaseShape:
    """The base model's shape from its GGUF metadata (read through a memory map: milliseconds)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(model_file))

    def value(key: str) -> Any:
        field = reader.get_field(key)
        if field is None:
            raise GgufLoraError(f"{model_file}: no {key} in its metadata")
        return field.contents()

    arch = str(value("general.architecture"))
    heads = int(value(f"{arch}.attention.head_count"))
    kv_field = reader.get_field(f"{arch}.attention.head_count_kv")
    return BaseShape(
        arch=arch,
        n_layers=int(value(f"{arch}.block_count")),
        n_head=heads,
        n_head_kv=int(kv_field.contents()) if kv_field is not None else heads,
    )


def permute_rows(matrix: Any, n_head: int) -> Any:
    """The row order llama.cpp's Llama layout gives a q/k projection: per head, the rotary halves interleaved.

    The same reshape as the HF -> GGUF conversion of the weights, applied to the LoRA's B factor
    (whose rows are the projection's output rows).
    """
    rows = matrix.shape[0]
    if rows % (2 * n_head):
        raise GgufLoraError(f"{rows} rows cannot be split into {n_head} heads of two rotary halves")
    return matrix.reshape(n_head, 2, rows // n_head // 2, *matrix.shape[1:]).swapaxes(1, 2).reshape(matrix.shape)


def gguf_alpha(config: Mapping[str, Any]) -> float:
    """The alpha llama.cpp divides by the rank so that the scale equals PEFT's (alpha / r, or alpha / sqrt(r))."""
    rank = int(config["r"])
    alpha = float(config.get("lora_alpha") or rank)
    return alpha * math.sqrt(rank) if config.get("use_rslora") else alpha


def check_peft_config(config: Mapping[str, Any]) -> None:
    """Refuse what a llama.cpp LoRA cannot express."""
    if config.get("peft_type") != "LORA":
        raise GgufLoraError(f"peft_type is {config.get('peft_type')!r}; only LORA adapters convert")
    if config.get("use_dora"):
        raise GgufLoraError("DoRA adapters have no llama.cpp form")
    if config.get("modules_to_save"):
        raise GgufLoraError(f"modules_to_save {config['modules_to_save']} (fully trained layers) have no LoRA form")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise GgufLoraError("per-layer ranks or alphas (rank_pattern, alpha_pattern) are not supported")


def lora_tensors(weights: Mapping[str, Any], base: BaseShape) -> dict[str, Any]:
    """PEFT tensors (`...q_proj.lora_A.weight`) -> GGUF tensors (`blk.N.attn_q.weight.lora_a`), float32."""
    import numpy as np
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    if base.arch not in SUPPORTED_ARCHS:
        raise GgufLoraError(f"architecture {base.arch!r}: only {sorted(SUPPORTED_ARCHS)} adapters convert")
    arch = {name: arch for arch, name in MODEL_ARCH_NAMES.items()}[base.arch]
    names = get_tensor_name_map(arch, base.n_layers)
    pairs: dict[str, dict[str, Any]] = {}
    for key, tensor in weights.items():
        match = _PEFT_NAME.match(key)
        if match is None:
            raise GgufLoraError(f"{key}: not a LoRA A or B weight")
        pairs.setdefault(match["module"], {})[match["factor"]] = tensor
    out: dict[str, Any] = {}
    for module, factors in sorted(pairs.items()):
        target = names.get_name(module)
        if target is None or target in ("token_embd", "output"):
            raise GgufLoraError(f"{module}: no llama.cpp LoRA target (not on embeddings or the output head)")
        a, b = _pair(module, factors)
        if target.endswith("attn_q"):
            b = permute_rows(b, base.n_head)
        elif target.endswith("attn_k"):
            b = permute_rows(b, base.n_head_kv)
        out[f"{target}.weight.lora_a"] = a
        out[f"{target}.weight.lora_b"] = np.ascontiguousarray(b)
    if not out:
        raise GgufLoraError("the adapter has no LoRA weights")
    return out


def _pair(module: str, factors: Mapping[str, Any]) -> tuple[Any, Any]:
    """A module's A (rank x in) and B (out x rank) factors as float32, checked to fit together."""
    import numpy as np

    if set(factors) != {"A", "B"}:
        raise GgufLoraError(f"{module}: LoRA pair incomplete (has {sorted(factors)})")
    a = np.ascontiguousarray(factors["A"], dtype=np.float32)
    b = np.ascontiguousarray(factors["B"], dtype=np.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
        raise GgufLoraError(f"{module}: factors of shapes {a.shape} and {b.shape} do not make a LoRA pair")
    return a, b


def write_gguf_lora(peft_dir: Path, out: Path, base: BaseShape) -> Path:
    """Write `peft_dir` (adapter_config.json + adapter_model.safetensors) as a GGUF LoRA at `out`.

    Written beside `out` under a temporary name and renamed into place, so a reader never sees half a file.
    """
    from gguf import GGUFType, GGUFWriter, Keys
    from safetensors.numpy import load_file

    config = json.loads((peft_dir / "adapter_config.json").read_text())
    check_peft_config(config)
    tensors = lora_tensors(load_file(str(peft_dir / "adapter_model.safetensors")), base)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        writer = GGUFWriter(staging, base.arch)
        writer.add_type(GGUFType.ADAPTER)
        writer.add_string(Keys.Adapter.TYPE, "lora")
        writer.add_float32(Keys.Adapter.LORA_ALPHA, gguf_alpha(config))
        for name, tensor in tensors.items():
            writer.add_tensor(name, tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        Path(staging).chmod(0o644)  # mkstemp makes it owner-only; the adapter is read by other servers too
        Path(staging).replace(out)
    finally:
        Path(staging).unlink(missing_ok=True)
    return out
