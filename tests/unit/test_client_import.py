"""The client is light: importing it loads grpc and the gateway.v1 stubs, none of the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = ("torch", "transformers", "local_models", "finetune", *(f"gateway.{p}" for p in ("routing", "api", "app")))
SERVER += tuple(f"gateway.{p}" for p in ("state", "config", "core", "remote", "observe", "cli"))


def test_importing_the_client_loads_none_of_the_server() -> None:
    code = "import sys, gateway.client\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = done.stdout.split()
    assert {"grpc", "gateway.v1.gateway_pb2_grpc", "gateway.client.aio"} <= set(loaded)
    assert [
        m for m in loaded if m.split(".")[0] in SERVER or m.startswith(tuple(f"{p}." for p in SERVER)) or m in SERVER
    ] == []
