"""The checked-in generated code must match what scripts/gen_proto.py produces from the .proto,
with the generator the lock pins (requirements.lock): a newer grpcio-tools upstream changes nothing
until a deliberate lock bump, which regenerates the stubs in the same commit (docs/dependencies.md)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from tests.locks import locked_versions, script

ROOT = Path(__file__).resolve().parents[2]
GENERATORS = ("grpcio-tools", "mypy-protobuf")  # what writes gateway/v1 (scripts/gen_proto.py)
GRPC_FAMILY = ("grpcio", "grpcio-tools", "grpcio-health-checking", "grpcio-reflection")


def test_the_generators_are_the_locked_ones() -> None:
    locked = locked_versions()
    for name in GENERATORS:
        installed = importlib.metadata.version(name)
        assert installed == locked[name], (
            f"gateway/v1 is generated with {name}=={locked[name]} (requirements.lock), but this environment has "
            f"{installed}: run `make install`, which installs the lock"
        )


def test_the_grpc_family_is_locked_at_one_version() -> None:
    locked = locked_versions()
    versions = {name: locked[name] for name in GRPC_FAMILY}
    assert len(set(versions.values())) == 1, (
        f"the gRPC packages move together (deploy/lock/constraints.txt): {versions}"
    )


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    locked = locked_versions()
    if any(importlib.metadata.version(name) != locked[name] for name in GENERATORS):
        pytest.skip("another generator than the lock's: test_the_generators_are_the_locked_ones says which")
    written = script("gen_proto").generate(tmp_path)
    assert {p.name for p in written} == {
        "gateway_pb2.py",
        "gateway_pb2.pyi",
        "gateway_pb2_grpc.py",
        "gateway_pb2_grpc.pyi",
    }
    for fresh in written:
        checked_in = ROOT / fresh.relative_to(tmp_path)
        assert checked_in.read_text() == fresh.read_text(), (
            f"{checked_in} is stale against proto/: run `make proto` "
            f"(grpcio-tools=={locked['grpcio-tools']}, mypy-protobuf=={locked['mypy-protobuf']}, from the lock)"
        )


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
