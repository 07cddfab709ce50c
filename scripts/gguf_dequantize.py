"""Write a GGUF model with its quantised weights stored as F16 (or F32): the values the transformers path serves.

The shipped SmolLM2-135M-Instruct.Q4_1.gguf keeps its weights in 4 bits, and llama.cpp then
quantises the activations to 8 bits for each matrix product; the transformers backend
dequantises the same file to float32. The two paths' confidences differ by about 0.02 (median,
docs/local_backends.md). llama.cpp serving this file instead computes in F16/F32 on the very
same weight values, and agrees with the transformers path to about 0.001, at a slower decode.

    python scripts/gguf_dequantize.py [--src FILE] [--out FILE] [--type f16|f32]
    # then [local.llamacpp] model_path = "<out>"

Metadata (tokenizer, chat template, hyper-parameters) is copied unchanged. Uses only the
`gguf` package and numpy.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

DEFAULT_OUT = Path.home() / ".cache" / "trading-gateway" / "models" / "SmolLM2-135M-Instruct.{type}.gguf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, help="GGUF file (default: the shipped SmolLM2 Q4_1 file)")
    parser.add_argument("--out", type=Path, help=f"where to write (default: {DEFAULT_OUT})")
    parser.add_argument("--type", choices=("f16", "f32"), default="f16")
    args = parser.parse_args()
    if args.src is None:
        from local_models.model_store import find_gguf

        args.src = find_gguf()
    out = args.out or Path(str(DEFAULT_OUT).format(type=args.type.upper()))
    dequantize_file(args.src, out, args.type)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.0f} MiB)")


def dequantize_file(src: Path, out: Path, kind: str) -> None:
    from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType
    from gguf.quants import dequantize

    reader = GGUFReader(str(src))
    arch = reader.get_field("general.architecture")
    assert arch is not None, f"{src}: no general.architecture"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.with_name(f".{out.name}.partial")
    writer = GGUFWriter(str(staging), str(arch.contents()))
    file_type = LlamaFileType.MOSTLY_F16 if kind == "f16" else LlamaFileType.ALL_F32
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == GGUFValueType.ARRAY else None
        value = int(file_type) if field.name == "general.file_type" else field.contents()
        writer.add_key_value(field.name, value, value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        shape = tuple(int(d) for d in reversed(tensor.shape))
        if tensor.tensor_type == GGMLQuantizationType.F32:
            data = np.asarray(tensor.data, dtype=np.float32).reshape(shape)
        else:
            data = dequantize(tensor.data, tensor.tensor_type).reshape(shape).astype(np.float32)
            if kind == "f16" and data.ndim > 1:
                data = data.astype(np.float16)
        writer.add_tensor(tensor.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(staging, out)


if __name__ == "__main__":
    main()
