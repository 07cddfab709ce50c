"""PEFT LoRA folders -> llama.cpp GGUF adapters: names, shapes, the q/k row order, alpha, and what is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader
from safetensors.numpy import save_file

from local_models.gguf_lora import (
    BaseShape,
    GgufLoraError,
    base_shape_from_gguf,
    gguf_alpha,
    permute_rows,
    write_gguf_lora,
)
from local_models.model_store import find_gguf

BASE = BaseShape(arch="llama", n_layers=2, n_head=4, n_head_kv=2)
HIDDEN, KV, RANK = 32, 16, 4  # 4 query heads of 8, 2 key/value heads of 8


def peft_folder(tmp_path: Path, targets: dict[str, int], **config: object) -> tuple[Path, dict[str, np.ndarray]]:
    """A PEFT folder with random A (rank x in) and B (out x rank) factors for each target module of each layer."""
    rng = np.random.default_rng(0)
    weights: dict[str, np.ndarray] = {}
    for layer in range(BASE.n_layers):
        for module, out in targets.items():
            prefix = f"base_model.model.model.layers.{layer}.{module}"
            weights[f"{prefix}.lora_A.weight"] = rng.standard_normal((RANK, HIDDEN)).astype(np.float32)
            weights[f"{prefix}.lora_B.weight"] = rng.standard_normal((out, RANK)).astype(np.float32)
    folder = tmp_path / "adapter"
    folder.mkdir()
    save_file(weights, str(folder / "adapter_model.safetensors"))
    settings = {"peft_type": "LORA", "r": RANK, "lora_alpha": 2 * RANK, **config}
    (folder / "adapter_config.json").write_text(json.dumps(settings))
    return folder, weights


def tensors(path: Path) -> dict[str, np.ndarray]:
    reader = GGUFReader(str(path))
    return {t.name: np.asarray(t.data).reshape(tuple(reversed([int(d) for d in t.shape]))) for t in reader.tensors}


def test_each_pair_is_named_after_the_base_tensor_with_the_factors_as_peft_has_them(tmp_path: Path) -> None:
    folder, weights = peft_folder(tmp_path, {"self_attn.v_proj": KV, "mlp.down_proj": HIDDEN})
    out = write_gguf_lora(folder, tmp_path / "lora.gguf", BASE)
    written = tensors(out)
    assert set(written) == {
        f"blk.{i}.{name}.weight.lora_{f}" for i in range(2) for name in ("attn_v", "ffn_down") for f in "ab"
    }
    np.testing.assert_array_equal(
        written["blk.1.attn_v.weight.lora_a"], weights["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"]
    )
    np.testing.assert_array_equal(
        written["blk.0.ffn_down.weight.lora_b"], weights["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"]
    )
    reader = GGUFReader(str(out))
    meta = {key: reader.get_field(key).contents() for key in ("general.architecture", "general.type", "adapter.type")}  # type: ignore[union-attr]
    assert meta == {"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora"}
    assert reader.get_field("adapter.lora.alpha").contents() == pytest.approx(2 * RANK)  # type: ignore[union-attr]


def test_query_and_key_updates_land_on_llama_cpps_row_order(tmp_path: Path) -> None:
    """B A in GGUF equals the weight update PEFT applies, with rows reordered as the GGUF weights are (per head)."""
    folder, weights = peft_folder(tmp_path, {"self_attn.q_proj": HIDDEN, "self_attn.k_proj": KV})
    written = tensors(write_gguf_lora(folder, tmp_path / "lora.gguf", BASE))
    for module, short, heads in (("q_proj", "attn_q", BASE.n_head), ("k_proj", "attn_k", BASE.n_head_kv)):
        prefix = f"base_model.model.model.layers.0.self_attn.{module}"
        update = weights[f"{prefix}.lora_B.weight"] @ weights[f"{prefix}.lora_A.weight"]
        served = written[f"blk.0.{short}.weight.lora_b"] @ written[f"blk.0.{short}.weight.lora_a"]
        np.testing.assert_allclose(served, permute_rows(update, heads), rtol=1e-5)
        assert not np.allclose(served, update)  # the order does change


def test_permute_rows_interleaves_each_heads_rotary_halves() -> None:
    rows = np.arange(8).reshape(8, 1)  # 2 heads of 4 rows: halves [0 1][2 3] and [4 5][6 7]
    assert permute_rows(rows, 2).ravel().tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_rslora_keeps_peft_scale() -> None:
    assert gguf_alpha({"r": 16, "lora_alpha": 8}) == 8  # llama.cpp: alpha / r = 0.5, as PEFT
    assert gguf_alpha({"r": 16, "lora_alpha": 8, "use_rslora": True}) / 16 == pytest.approx(8 / 4)  # alpha / sqrt(r)


@pytest.mark.parametrize(
    ("config", "targets", "message"),
    [
        ({"use_dora": True}, {"self_attn.v_proj": KV}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, {"self_attn.v_proj": KV}, "modules_to_save"),
        ({"rank_pattern": {"v_proj": 2}}, {"self_attn.v_proj": KV}, "rank_pattern"),
        ({"peft_type": "IA3"}, {"self_attn.v_proj": KV}, "LORA"),
    ],
)
def test_what_llama_cpp_cannot_serve_is_refused(
    tmp_path: Path, config: dict[str, object], targets: dict[str, int], message: str
) -> None:
    folder, _ = peft_folder(tmp_path, targets, **config)
    with pytest.raises(GgufLoraError, match=message):
        write_gguf_lora(folder, tmp_path / "lora.gguf", BASE)
    assert not (tmp_path / "lora.gguf").exists()
    assert not list(tmp_path.glob(".lora.gguf.*"))  # no half-written file is left


def test_an_adapter_on_the_output_head_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "head"
    folder.mkdir()
    save_file(
        {
            "base_model.model.lm_head.lora_A.weight": np.ones((RANK, HIDDEN), np.float32),
            "base_model.model.lm_head.lora_B.weight": np.ones((64, RANK), np.float32),
        },
        str(folder / "adapter_model.safetensors"),
    )
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": RANK, "lora_alpha": RANK}))
    with pytest.raises(GgufLoraError, match="output head"):
        write_gguf_lora(folder, tmp_path / "lora.gguf", BASE)


def test_the_embedded_models_shape_is_read_from_its_gguf_file() -> None:
    assert base_shape_from_gguf(find_gguf()) == BaseShape(arch="llama", n_layers=30, n_head=9, n_head_kv=3)
