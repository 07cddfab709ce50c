"""Generate the Python gRPC code for proto/gateway/v1/gateway.proto.

The one way generated code is produced: `make proto` runs this, and the drift
test runs it into a temporary folder and compares. Output lands in
gateway/v1/ (the proto package path), next to the gateway package that uses it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = ("gateway/v1/gateway.proto",)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc (grpcio-tools) with the mypy-protobuf plugins; return the files written."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    bin_dir = Path(sys.executable).parent  # mypy-protobuf installs its plugins beside python
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *PROTO_FILES,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    stems = [Path(f).with_suffix("") for f in PROTO_FILES]
    return sorted(p for stem in stems for p in (out_dir / stem.parent).glob(f"{stem.name}_pb2*"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: the repo)")
    written = generate(parser.parse_args().out)
    for path in written:
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
