"""Fuzzing the front doors: random GenerateRequests over real gRPC, random TOML configurations.

The gateway process runs the echo backend with a task and a label set, so every
request that passes validation reaches the router. The property: whatever the
bytes, the answer is OK or a clean INVALID_ARGUMENT / RESOURCE_EXHAUSTED that
names what to change, and the server keeps serving. A bad configuration gets a
ConfigError naming the key, never another exception.

The example counts are bounded so the default suite stays fast; raise them with
FUZZ_EXAMPLES=N for a longer hunt.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.config import ConfigError, load_config
from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.gateway_process import GatewayProcess, start_gateway

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
CONFIG = """
[local]
backend = "echo"

[server]
max_request_bytes = 262144
max_batch_items = 8

[cache]
enabled = false

[tasks.yesno]
labels = ["yes", "no"]
min_confidence = 0.5
"""
# The fields a validation error may name: the request's own (with an index where it has one), or the whole request.
FIELDS = re.compile(
    r"\b(request|messages(\[\d+\](\.(role|content))?)?|temperature|min_confidence|priority|privacy|task|model|max_tokens|tags|request_id|requests(\[\d+\])?)\b"
)
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}

texts = st.text(max_size=200)
roles = st.one_of(st.sampled_from(["system", "user", "assistant"]), texts)
messages = st.lists(st.builds(pb.ChatMessage, role=roles, content=texts), max_size=6)
floats = st.floats(width=32, allow_nan=True, allow_infinity=True)
enum_values = st.one_of(st.integers(0, 2), st.integers(-(2**31), 2**31 - 1))
tags = st.one_of(
    st.dictionaries(texts, texts, max_size=8),
    st.dictionaries(st.text(min_size=1, max_size=40), st.text(max_size=400), min_size=200, max_size=600),
)


@st.composite
def generate_requests(draw: st.DrawFn) -> pb.GenerateRequest:
    request = pb.GenerateRequest(
        request_id=draw(texts),
        messages=draw(messages),
        task=draw(st.one_of(st.just(""), st.just("yesno"), texts)),
        model=draw(st.one_of(st.just(""), st.just("echo"), st.just("openai/gpt-4o-mini"), texts)),
        max_tokens=draw(st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1))),
        temperature=draw(floats),
        priority=draw(enum_values),
        privacy=draw(enum_values),
        bypass_cache=draw(st.booleans()),
        tags=draw(tags),
    )
    if draw(st.booleans()):
        request.min_confidence = draw(floats)
    return request


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    process = start_gateway(CONFIG, tmp_path_factory.mktemp("fuzz-gateway"))
    yield process
    process.stop()


@pytest.fixture(scope="module")
def channel(gateway: GatewayProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(gateway.target) as opened:
        yield opened


def _check(code: grpc.StatusCode, details: str) -> None:
    assert code in ALLOWED, f"{code.name}: {details}"
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        assert FIELDS.search(details), f"the error does not name a field: {details!r}"
    if code is not grpc.StatusCode.OK:
        assert details.strip(), f"{code.name} without a message"


def _assert_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = pb_grpc.InferenceGatewayStub(channel)
    answer = stub.Generate(
        pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="still there?")]), timeout=5
    )
    assert answer.text


def test_random_generate_requests_get_ok_or_a_named_field(channel: grpc.Channel) -> None:
    stub = pb_grpc.InferenceGatewayStub(channel)
    seen: set[grpc.StatusCode] = set()

    @FUZZ_SETTINGS
    @given(request=generate_requests())
    def one(request: pb.GenerateRequest) -> None:
        try:
            stub.Generate(request, timeout=10)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        seen.add(code)
        _check(code, details)

    one()
    assert grpc.StatusCode.INVALID_ARGUMENT in seen  # the strategy reaches validation, not only the happy path
    _assert_serving(channel)


def test_random_streams_and_batches_get_ok_or_a_named_field(channel: grpc.Channel) -> None:
    stub = pb_grpc.InferenceGatewayStub(channel)

    @settings(FUZZ_SETTINGS, max_examples=max(1, EXAMPLES // 3))
    @given(request=generate_requests(), batch=st.lists(generate_requests(), max_size=10))
    def one(request: pb.GenerateRequest, batch: list[pb.GenerateRequest]) -> None:
        for call in (
            lambda: list(stub.GenerateStream(request, timeout=10)),
            lambda: stub.GenerateBatch(pb.GenerateBatchRequest(requests=batch), timeout=10),
        ):
            try:
                call()
                code, details = grpc.StatusCode.OK, ""
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
            _check(code, details)

    one()
    _assert_serving(channel)


def test_nested_and_oversized_messages_are_refused_cleanly(channel: grpc.Channel) -> None:
    stub = pb_grpc.InferenceGatewayStub(channel)
    with pytest.raises(grpc.RpcError) as empty:
        stub.Generate(pb.GenerateRequest(), timeout=5)
    assert empty.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "messages" in (empty.value.details() or "")
    huge = pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content="x" * 300_000)])
    with pytest.raises(grpc.RpcError) as too_big:
        stub.Generate(huge, timeout=5)
    assert too_big.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    raw = channel.unary_unary("/gateway.v1.InferenceGateway/Generate")  # bytes in, bytes out
    for garbage in (b"\xff" * 64, b"\x12\x05\x0a\x03\xff\xfe\xfd"):
        with pytest.raises(grpc.RpcError) as corrupt:
            raw(garbage, timeout=5)
        assert corrupt.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in (corrupt.value.details() or "")
    streaming = channel.unary_stream("/gateway.v1.InferenceGateway/GenerateStream")
    with pytest.raises(grpc.RpcError) as corrupt_stream:
        list(streaming(b"\xff" * 64, timeout=5))
    assert corrupt_stream.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    for _ in range(20):  # random bytes may even parse; either way the answer is clean
        try:
            raw(os.urandom(512), timeout=5)
        except grpc.RpcError as exc:
            _check(exc.code(), exc.details() or "")
    _assert_serving(channel)


# -- random configurations ---------------------------------------------------------------------------------------------

KEYS = st.sampled_from(
    [
        "offline", "state_dir", "server", "local", "routing", "tasks", "providers", "cache", "usage", "budget",
        "state", "learning", "dashboard", "adapters", "host", "port", "http_port", "backend", "max_batch",
        "labels", "min_confidence", "escalation_order", "daily_token_budget", "enabled", "ttl_s", "rules",
        "max_in_flight", "log_level", "transformers", "echo", "openai", "yesno", "bogus", "🚀", "",
    ]
)  # fmt: skip
scalars = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=20,
)
documents = st.dictionaries(KEYS, values, max_size=6)


def _toml(table: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer: scalars and arrays inline, tables as [dotted.headers]."""
    lines, tables = [], []
    for key, value in table.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    out = "\n".join(lines) + "\n"
    for key, value in tables:
        dotted = f"{prefix}.{_key(key)}" if prefix else _key(key)
        out += f"\n[{dotted}]\n" + _toml(value, dotted)
    return out


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _value(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else "nan"
    if isinstance(value, str):
        return '"' + "".join(c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"


@FUZZ_SETTINGS
@given(document=documents)
def test_random_configurations_load_or_name_the_key(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any]
) -> None:
    path: Path = tmp_path_factory.mktemp("config") / "gateway.toml"
    path.write_text(_toml(document))
    try:
        load_config(path, env={"HOME": str(path.parent)})
    except ConfigError as exc:
        message = str(exc)
        assert str(path) in message  # which file
        assert "'" in message or "not valid TOML" in message, message  # which key (quoted), or where the syntax broke


@FUZZ_SETTINGS
@given(raw=st.binary(max_size=300))
def test_random_bytes_as_configuration_are_refused_with_the_file_named(
    tmp_path_factory: pytest.TempPathFactory, raw: bytes
) -> None:
    path: Path = tmp_path_factory.mktemp("config") / "gateway.toml"
    path.write_bytes(raw)
    try:
        load_config(path, env={"HOME": str(path.parent)})
    except ConfigError as exc:
        assert str(path) in str(exc)
