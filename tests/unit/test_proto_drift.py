"""The checked-in generated code must match what scripts/gen_proto.py produces from the .proto."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _gen_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    written = _gen_module().generate(tmp_path)
    assert {p.name for p in written} == {
        "gateway_pb2.py",
        "gateway_pb2.pyi",
        "gateway_pb2_grpc.py",
        "gateway_pb2_grpc.pyi",
    }
    for fresh in written:
        checked_in = ROOT / fresh.relative_to(tmp_path)
        assert checked_in.read_text() == fresh.read_text(), f"{checked_in} is stale: run `make proto`"


def test_contract_names_are_present() -> None:
    from gateway.v1 import gateway_pb2 as pb

    service = pb.DESCRIPTOR.services_by_name["InferenceGateway"]
    assert [m.name for m in service.methods] == [
        "Generate",
        "GenerateStream",
        "GenerateBatch",
        "ListModels",
        "GetUsage",
    ]
