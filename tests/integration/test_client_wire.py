"""gateway.client against a scripted gRPC server: what is retried and what is not, the bearer key, TLS.

The server (tests/fakes/scripted_gateway.py) speaks the real gateway.v1 protocol and fails on cue.
Waits between retries are recorded instead of slept, so the tests count them without timing anything.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import grpc
import pytest

from gateway.client import (
    AsyncGatewayClient,
    GatewayClient,
    InvalidArgument,
    PermissionDenied,
    Request,
    ResourceExhausted,
    Result,
    RetryPolicy,
    Tier,
    Tls,
    Unauthenticated,
    Unavailable,
)
from tests.certificates import make_certificates
from tests.fakes.scripted_gateway import Failure, ScriptedGateway, serve
from tests.gateway_process import free_port

UNAVAILABLE = Failure(grpc.StatusCode.UNAVAILABLE, "draining")
RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedGateway, str]]:
    servicer = ScriptedGateway()
    server, target = serve(servicer)
    yield servicer, target
    server.stop(grace=None)


def client(target: str, waits: list[float], **kwargs: object) -> GatewayClient:
    return GatewayClient(target, retry=RETRY, rng=random.Random(7), sleep=waits.append, timeout_s=10, **kwargs)  # type: ignore[arg-type]


def test_unavailable_is_retried_then_answers(scripted: tuple[ScriptedGateway, str]) -> None:
    servicer, target = scripted
    servicer.failures += [UNAVAILABLE, UNAVAILABLE]
    waits: list[float] = []
    with client(target, waits) as gw:
        result = gw.generate("buy 100 AAPL")
    assert result.text == "buy 100 AAPL" and result.tier is Tier.LOCAL
    assert servicer.count("Generate") == 3
    assert len(waits) == 2 and all(0 <= w <= 0.05 for w in waits)


def test_unavailable_gives_up_after_max_attempts(scripted: tuple[ScriptedGateway, str]) -> None:
    servicer, target = scripted
    servicer.failures += [UNAVAILABLE] * 5
    waits: list[float] = []
    with client(target, waits) as gw, pytest.raises(Unavailable) as err:
        gw.route_batch(["a", "b"])
    assert err.value.code is grpc.StatusCode.UNAVAILABLE and err.value.message == "draining"
    assert servicer.count("GenerateBatch") == 3 and len(waits) == 2


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (
            Failure(grpc.StatusCode.INVALID_ARGUMENT, "messages[0].role: 'bot' is not one of system, user"),
            InvalidArgument,
        ),
        (Failure(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key"), Unauthenticated),
        (Failure(grpc.StatusCode.PERMISSION_DENIED, "task 'trend' is not allowed"), PermissionDenied),
        (
            Failure(grpc.StatusCode.RESOURCE_EXHAUSTED, "budget spent", (("retry-after", "3600"),)),
            ResourceExhausted,
        ),
    ],
)
def test_other_codes_raise_at_once_with_code_message_and_metadata(
    scripted: tuple[ScriptedGateway, str], failure: Failure, error: type[Exception]
) -> None:
    servicer, target = scripted
    servicer.failures.append(failure)
    waits: list[float] = []
    with client(target, waits) as gw, pytest.raises(error) as err:
        gw.generate("x")
    assert err.value.code is failure.code  # type: ignore[attr-defined]
    assert err.value.message == failure.message  # type: ignore[attr-defined]
    assert dict(failure.trailing).items() <= err.value.metadata.items()  # type: ignore[attr-defined]
    assert servicer.count("Generate") == 1 and waits == []


def test_a_stream_is_retried_before_its_first_chunk_never_after(scripted: tuple[ScriptedGateway, str]) -> None:
    servicer, target = scripted
    servicer.failures.append(UNAVAILABLE)
    waits: list[float] = []
    with client(target, waits) as gw:
        items = list(gw.generate_stream("hello"))
        assert items[0] == "first " and isinstance(items[-1], Result) and items[-1].text == "hello"
        assert servicer.count("GenerateStream") == 2

        servicer.fail_after_first_chunk = UNAVAILABLE
        stream = gw.generate_stream("hello")
        assert next(stream) == "first "
        with pytest.raises(Unavailable):
            next(stream)
    assert servicer.count("GenerateStream") == 3  # the failed stream was not tried again


def test_nothing_listening_is_unavailable_after_bounded_tries() -> None:
    waits: list[float] = []
    with client(f"127.0.0.1:{free_port()}", waits) as gw, pytest.raises(Unavailable):
        gw.models()
    assert len(waits) == RETRY.max_attempts - 1


def test_the_api_key_travels_as_a_bearer_token_and_never_in_repr(scripted: tuple[ScriptedGateway, str]) -> None:
    servicer, target = scripted
    with GatewayClient(target, api_key="gk_secret123") as gw:
        gw.generate("x")
        gw.models()
        assert "gk_secret123" not in repr(gw)
    assert [meta.get("authorization") for _, meta in servicer.calls] == ["Bearer gk_secret123"] * 2


@pytest.mark.parametrize("key", ["", "two words", "line\r\nx-injected: 1"])
def test_a_malformed_api_key_is_refused_before_any_call(key: str) -> None:
    with pytest.raises(ValueError, match="api_key"):
        GatewayClient("127.0.0.1:1", api_key=key)


async def test_async_client_retries_and_streams(scripted: tuple[ScriptedGateway, str]) -> None:
    servicer, target = scripted
    servicer.failures += [UNAVAILABLE, UNAVAILABLE]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncGatewayClient(target, retry=RETRY, sleep=sleep, api_key="k1") as gw:
        assert (await gw.generate(Request("sell", task="trend"))).text == "sell"
        items = [item async for item in gw.generate_stream("hi")]
        servicer.failures.append(Failure(grpc.StatusCode.INVALID_ARGUMENT, "temperature: 9 is out of range"))
        with pytest.raises(InvalidArgument, match="temperature"):
            await gw.generate("x")
    assert items[0] == "first " and isinstance(items[-1], Result)
    assert len(waits) == 2 and servicer.count("Generate") == 4
    assert {meta.get("authorization") for _, meta in servicer.calls} == {"Bearer k1"}


def test_tls_with_a_client_certificate() -> None:
    certs = make_certificates()
    credentials = grpc.ssl_server_credentials(
        [(certs.server.key, certs.server.cert)], root_certificates=certs.ca.cert, require_client_auth=True
    )
    servicer = ScriptedGateway()
    server, target = serve(servicer, credentials)
    try:
        mutual = Tls(root_ca=certs.ca.cert, cert_chain=certs.client.cert, private_key=certs.client.key)
        with GatewayClient(target, tls=mutual, api_key="k") as gw:
            assert gw.generate("over tls").text == "over tls"
        no_client_cert = Tls(root_ca=certs.ca.cert)
        with (
            GatewayClient(target, tls=no_client_cert, retry=RetryPolicy(max_attempts=1)) as gw,
            pytest.raises(Unavailable),
        ):
            gw.generate("x", timeout=10)
        with GatewayClient(target, retry=RetryPolicy(max_attempts=1)) as gw, pytest.raises(Unavailable):
            gw.generate("plaintext to a TLS port", timeout=10)
        assert servicer.count("Generate") == 1
    finally:
        server.stop(grace=None)


async def test_async_tls_checks_the_server_against_the_ca() -> None:
    certs = make_certificates()
    other = make_certificates()
    servicer = ScriptedGateway()
    server, target = serve(servicer, grpc.ssl_server_credentials([(certs.server.key, certs.server.cert)]))
    try:
        async with AsyncGatewayClient(target, tls=Tls(root_ca=certs.ca.cert)) as gw:
            assert (await gw.generate("ok")).text == "ok"
        async with AsyncGatewayClient(target, tls=Tls(root_ca=other.ca.cert), retry=RetryPolicy(max_attempts=1)) as gw:
            with pytest.raises(Unavailable):
                await gw.generate("signed by another CA", timeout=10)
    finally:
        server.stop(grace=None)


def test_tls_needs_cert_and_key_together() -> None:
    certs = make_certificates()
    with pytest.raises(ValueError, match="cert_chain and private_key"):
        Tls(root_ca=certs.ca.cert, cert_chain=certs.client.cert)
