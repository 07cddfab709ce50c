"""buf lint and buf breaking (the @bufbuild/buf npm package) hold for the proto, and catch what they should.

The breaking check compares proto/ with proto/released/gateway-v1.binpb, the image of the last
released proto (docs/proto.md says how to cut a new one).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.npm import ROOT, npm_ci

PROTO = Path("proto") / "gateway" / "v1" / "gateway.proto"
RELEASED = Path("proto") / "released" / "gateway-v1.binpb"


@pytest.fixture(scope="module")
def buf() -> Path:
    return npm_ci(ROOT) / "buf"


def run_buf(buf: Path, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(buf), *args], cwd=root, capture_output=True, text=True, timeout=120, check=False)


def copy_of_the_repo_proto(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "buf.yaml", tmp_path)
    shutil.copytree(ROOT / "proto", tmp_path / "proto")
    return tmp_path


def edit(root: Path, old: str, new: str) -> None:
    path = root / PROTO
    text = path.read_text()
    assert old in text, f"{old!r} not in {PROTO}: update this test's edit"
    path.write_text(text.replace(old, new, 1))


def test_buf_lint_passes(buf: Path) -> None:
    done = run_buf(buf, ROOT, "lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_buf_breaking_passes_against_the_released_image(buf: Path) -> None:
    assert (ROOT / RELEASED).stat().st_size > 0
    done = run_buf(buf, ROOT, "breaking", "--against", str(RELEASED))
    assert done.returncode == 0, done.stdout + done.stderr


def test_renumbering_a_field_breaks(buf: Path, tmp_path: Path) -> None:
    root = copy_of_the_repo_proto(tmp_path)
    edit(root, "string task = 3;", "string task = 30;")

    done = run_buf(buf, root, "breaking", "--against", str(RELEASED))

    assert done.returncode != 0
    assert 'field "3" with name "task" on message "GenerateRequest" was deleted' in done.stdout


def test_renaming_a_field_breaks(buf: Path, tmp_path: Path) -> None:
    root = copy_of_the_repo_proto(tmp_path)
    edit(root, "string provider = 4;", "string backend = 4;")

    done = run_buf(buf, root, "breaking", "--against", str(RELEASED))

    assert done.returncode != 0
    assert 'changed name from "provider" to "backend"' in done.stdout


def test_an_added_field_and_rpc_do_not_break(buf: Path, tmp_path: Path) -> None:
    root = copy_of_the_repo_proto(tmp_path)
    edit(root, "message ListModelsRequest {}", "message ListModelsRequest { string task_filter = 1; }")
    edit(
        root,
        "rpc GetUsage(GetUsageRequest) returns (GetUsageResponse);",
        "rpc GetUsage(GetUsageRequest) returns (GetUsageResponse);\n  rpc Ping(PingRequest) returns (PingResponse);",
    )
    (root / PROTO).write_text((root / PROTO).read_text() + "message PingRequest {}\nmessage PingResponse {}\n")

    assert run_buf(buf, root, "breaking", "--against", str(RELEASED)).returncode == 0
    done = run_buf(buf, root, "lint")
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_still_flags_what_is_not_excepted(buf: Path, tmp_path: Path) -> None:
    root = copy_of_the_repo_proto(tmp_path)
    edit(root, "message ListModelsRequest {}", "message ListModelsRequest { string taskFilter = 1; }")

    done = run_buf(buf, root, "lint")

    assert done.returncode != 0
    assert 'Field name "taskFilter" should be lower_snake_case' in done.stdout
