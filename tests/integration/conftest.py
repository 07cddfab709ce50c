from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import GatewayProcess, start_gateway

# The embedded model, with a label task and small caps so the limits are cheap to reach.
MODEL_CONFIG = """
[server]
max_batch_items = 4
max_request_bytes = 65536
default_max_tokens = 24

[local.transformers]
max_batch = 8
max_wait_ms = 50

[tasks.yesno]
labels = ["yes", "no"]
min_confidence = 0.5
system_prompt = "Answer with one word: yes or no."
"""


@pytest.fixture(scope="session")
def model_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("model-gateway")
    # These tests exercise the model path, so repeated prompts must reach it (no response cache), and
    # GetUsage must count this process's requests only (usage records in this run's folder).
    state = f'\n[cache]\nenabled = false\n\n[usage]\npath = "{workdir / "usage.sqlite3"}"\n'
    gateway = start_gateway(MODEL_CONFIG + state, workdir)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="session")
def stub(model_gateway: GatewayProcess) -> Iterator[pb_grpc.InferenceGatewayStub]:
    with grpc.insecure_channel(model_gateway.target) as channel:
        yield pb_grpc.InferenceGatewayStub(channel)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
