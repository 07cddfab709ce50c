"""API keys end to end: gateway processes with keys made by `python -m gateway keys`, called over gRPC and HTTP.

The status table (missing, wrong, revoked, not allowed, over quota), a local-only
key that never reaches the provider stand-in, per-key usage, the admin role on
the HTTP port, header injection attempts, 10,000 wrong keys, a revoke seen by a
second replica, TLS and mutual TLS, and the refusal of plaintext off loopback.
Every test ends by checking that no key appears anywhere in the gateway's log.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.fakes.base import FakeProviderServer
from tests.fakes.openai_fake import FakeOpenAI
from tests.fakes.providers import TEST_KEYS
from tests.fakes.threaded import serving_in_thread
from tests.gateway_process import GatewayProcess, keys_cli, keys_file, start_gateway
from tests.waiting import wait_until

WRONG_KEYS = 10_000


def config(state_dir: Path, openai: FakeProviderServer | None = None, *, refresh_s: float = 0.2) -> str:
    provider = ""
    if openai is not None:
        provider = f"""
[providers.openai]
model = "gpt-test"
base_url = "{openai.origin}/v1"
api_key_env = "OPENAI_API_KEY"
max_retries = 0
"""
    return f"""
state_dir = "{state_dir}"
[local]
backend = "echo"
[keys]
refresh_s = {refresh_s}
[cache]
enabled = false
[routing]
escalation_order = ["openai"]
[[routing.rules]]
match_task = "research"
escalate = true
[tasks.trend]
[tasks.research]
{provider}"""


def ask(content: str = "hello", **fields: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(messages=[pb.ChatMessage(role="user", content=content)], max_tokens=4, **fields)  # type: ignore[arg-type]


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


@dataclass
class Keyed:
    gateway: GatewayProcess
    openai: FakeOpenAI
    keys: dict[str, str]  # name -> the key as printed once

    def assert_no_key_in_log(self) -> None:
        log = self.gateway.log_text()
        for name, key in self.keys.items():
            secret = key.rsplit("_", 1)[-1]
            assert key not in log and secret not in log, f"{name}'s key is in the log"
        assert "Bearer" not in log and "Basic " not in log


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keyed]:
    workdir = tmp_path_factory.mktemp("keyed")
    with serving_in_thread(FakeOpenAI()) as openai:
        assert isinstance(openai, FakeOpenAI)
        text = config(workdir / "state", openai)
        (workdir / "keys.toml").write_text(text)
        cli = workdir / "keys.toml"
        keys = {
            "ops": keys_cli(cli, "create", "ops", "--admin"),
            "desk": keys_cli(cli, "create", "desk", "--tasks", "trend", "research"),
            "private": keys_cli(cli, "create", "private", "--local-only"),
            "small": keys_cli(cli, "create", "small", "--daily-tokens", "40"),
            "slow": keys_cli(cli, "create", "slow", "--rpm", "1"),
            "gone": keys_cli(cli, "create", "gone"),
        }
        keys_cli(cli, "revoke", "gone")
        gateway = start_gateway(text, workdir, env={**TEST_KEYS, **keys_file(workdir / "state")})
        try:
            yield Keyed(gateway, openai, keys)
        finally:
            gateway.stop()
    Keyed(gateway, openai, keys).assert_no_key_in_log()


async def code_of(call: object) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        trailers = {k: str(v) for k, v in (exc.trailing_metadata() or ())}
        return exc.code(), exc.details() or "", trailers
    return grpc.StatusCode.OK, "", {}


async def test_the_grpc_status_table(keyed: Keyed) -> None:
    k = keyed.keys
    async with grpc.aio.insecure_channel(keyed.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        made_up = "gw_0123456789ab_" + secrets.token_urlsafe(32)
        for metadata, why in (
            ((), "missing API key"),
            (bearer(made_up), "invalid API key"),
            (bearer("sk-not-ours"), "invalid"),
            ((("authorization", "Basic bm9wZQ=="),), "invalid"),
            (bearer(k["gone"]), "'gone' has been revoked"),
        ):
            for call in (
                stub.Generate(ask(), metadata=metadata),
                stub.ListModels(pb.ListModelsRequest(), metadata=metadata),
            ):
                code, details, _ = await code_of(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED and why in details

        assert (await stub.Generate(ask(task="trend"), metadata=bearer(k["desk"]))).text == "hello"
        code, details, _ = await code_of(stub.Generate(ask(), metadata=bearer(k["desk"])))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "may ask only the tasks trend, research" in details
        batch = pb.GenerateBatchRequest(requests=[ask(task="trend"), ask(task="other")])
        code, details, _ = await code_of(stub.GenerateBatch(batch, metadata=bearer(k["desk"])))
        assert code == grpc.StatusCode.PERMISSION_DENIED and details.startswith("requests[1]: task:")

        assert (await stub.Generate(ask(), metadata=bearer(k["slow"]))).text == "hello"
        code, details, trailers = await code_of(stub.Generate(ask(), metadata=bearer(k["slow"])))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "1 requests per minute; retry after" in details
        assert 0 < int(trailers["retry-after"]) <= 60 and trailers["x-gateway-resets-at"] in details

        # 40 tokens a day; each request reserves ceil(5/3) + 4 + 3 + max_tokens 4 = 13, then counts the 2 it used
        # (echo): the 15th finds 14 * 2 + 13 > 40
        answered = 0
        while (answered := answered + 1) < 20:
            code, details, trailers = await code_of(stub.Generate(ask(), metadata=bearer(k["small"])))
            if code != grpc.StatusCode.OK:
                break
        assert answered == 15 and code == grpc.StatusCode.RESOURCE_EXHAUSTED and "daily quota of 40 tokens" in details
        assert "resets at" in details and trailers["x-gateway-resets-at"].endswith("T00:00:00Z")


async def test_a_local_only_key_never_reaches_the_provider(keyed: Keyed) -> None:
    k = keyed.keys
    async with grpc.aio.insecure_channel(keyed.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        before = keyed.openai.requests
        remote = await stub.Generate(ask(task="research"), metadata=bearer(k["desk"]))  # the rule escalates
        assert remote.tier == pb.TIER_REMOTE and keyed.openai.requests == before + 1

        local = await stub.Generate(ask(task="research"), metadata=bearer(k["private"]))
        assert local.tier == pb.TIER_LOCAL
        chunks = [c async for c in stub.GenerateStream(ask(task="research"), metadata=bearer(k["private"]))]
        assert chunks[-1].final.tier == pb.TIER_LOCAL
        code, details, _ = await code_of(stub.Generate(ask(model="openai/gpt-test"), metadata=bearer(k["private"])))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "local-only" in details
        assert keyed.openai.requests == before + 1


async def test_usage_by_key_name_and_who_may_read_it(keyed: Keyed) -> None:
    k = keyed.keys
    async with grpc.aio.insecure_channel(keyed.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        for _ in range(3):
            await stub.Generate(ask(task="trend"), metadata=bearer(k["private"]))
        own = await stub.GetUsage(pb.GetUsageRequest(), metadata=bearer(k["private"]))  # a client key: its own
        by_admin = await stub.GetUsage(pb.GetUsageRequest(client="private"), metadata=bearer(k["ops"]))
        everyone = await stub.GetUsage(pb.GetUsageRequest(), metadata=bearer(k["ops"]))
        assert own.requests == by_admin.requests >= 3 and everyone.requests > own.requests
        code, _, _ = await code_of(stub.GetUsage(pb.GetUsageRequest(client="ops"), metadata=bearer(k["private"])))
        assert code == grpc.StatusCode.PERMISSION_DENIED

    async with httpx.AsyncClient(base_url=keyed.gateway.http_url) as http:
        assert (await http.get("/healthz")).status_code == 200 and (await http.get("/metrics")).status_code == 200
        for path in ("/", "/api/usage"):
            refused = await http.get(path)
            assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Basic")
            assert (await http.get(path, headers={"Authorization": f"Bearer {k['desk']}"})).status_code == 403
            assert (await http.get(path, headers={"Authorization": f"Bearer {k['ops']}"})).status_code == 200
        browser = base64.b64encode(f"anyone:{k['ops']}".encode()).decode()  # how a browser sends the password
        body = (await http.get("/api/usage?client=private", headers={"Authorization": f"Basic {browser}"})).json()
        assert body["client"] == "private" and body["requests"] == own.requests
        assert {row["client_id"] for row in body["recent"]} == {"private"}
        bad = await http.get("/api/usage?client=a%0d%0ab", headers={"Authorization": f"Bearer {k['ops']}"})
        assert bad.status_code == 400 and "\r" not in bad.text
        models = await http.get("/v1/models")
        assert models.status_code == 401 and models.json()["error"]["code"] == "unauthenticated"
        assert (await http.get("/v1/models", headers={"Authorization": f"Bearer {k['gone']}"})).status_code == 401


async def test_header_injection_attempts_get_a_clean_refusal_and_are_never_echoed(keyed: Keyed) -> None:
    """The gRPC library will not send CR, LF, NUL or non-ASCII in metadata; what it will send is refused cleanly.
    Raw HTTP/1.1 carries them all to the HTTP port."""
    k = keyed.keys
    async with grpc.aio.insecure_channel(keyed.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        for value in ("Bearer x\r\nx-admin: 1", "Bearer x\x00y", "Bearer clé"):
            with pytest.raises(Exception):  # noqa: B017 - refused by the client library before sending
                await stub.Generate(ask(), metadata=(("authorization", value),), timeout=5)
        for metadata in (
            (("authorization", "Bearer " + "A" * 4000),),
            (("authorization", f"Bearer {k['desk']}"), ("authorization", f"Bearer {k['ops']}")),
            (("authorization", f"Bearer {k['desk']} ; admin"),),
            (("authorization-bin", b"Bearer \r\n\x00" + k["ops"].encode()),),
            (("authorization", f"Bearer {k['ops']}".upper()),),
        ):
            code, details, _ = await code_of(stub.Generate(ask(task="trend"), metadata=metadata, timeout=5))
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert all(str(v)[7:40] not in details for _, v in metadata)
        assert (await stub.Generate(ask(task="trend"), metadata=bearer(k["desk"]))).text == "hello"

    host, port = keyed.gateway.http_url.removeprefix("http://").split(":")
    attempts = [
        b"Authorization: Bearer x\r\nX-Injected: 1",
        b"Authorization: Bearer \x00" + k["ops"].encode(),
        "Authorization: Bearer cl\u00e9".encode(),
        b"Authorization: Bearer " + b"A" * 9000,
        b"Authorization: Bearer " + k["ops"].encode() + b"\rX-Gateway-Task: trend",
        b"Authorization: Bearer " + k["desk"].encode() + b"\r\nX-Gateway-Task: tr\x00end",
        "X-Gateway-Task: tr\u00e9nd\r\nAuthorization: Bearer nope".encode(),
    ]
    for header in attempts:
        status, reply = await asyncio.to_thread(raw_http, host, int(port), b"GET /api/usage HTTP/1.1\r\n" + header)
        assert status in (400, 401), (header, status)
        assert b"Injected" not in reply and b"\x00" not in reply and b"A" * 100 not in reply
        assert k["ops"].encode() not in reply and b"tr\xc3\xa9nd" not in reply


def raw_http(host: str, port: int, head: bytes) -> tuple[int, bytes]:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return int(reply.split(b" ", 2)[1]), reply


async def test_ten_thousand_wrong_keys_are_all_refused_while_a_good_key_keeps_working(keyed: Keyed) -> None:
    k = keyed.keys
    refused = answered = 0
    async with grpc.aio.insecure_channel(keyed.gateway.target) as channel:
        stub = pb_grpc.InferenceGatewayStub(channel)
        lanes = 50

        async def wrong(lane: int) -> None:
            nonlocal refused
            for _ in range(WRONG_KEYS // lanes):
                made_up = f"gw_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
                code, _, _ = await code_of(stub.ListModels(pb.ListModelsRequest(), metadata=bearer(made_up)))
                assert code == grpc.StatusCode.UNAUTHENTICATED
                refused += 1

        async def good() -> None:
            nonlocal answered
            while refused < WRONG_KEYS:
                assert (await stub.Generate(ask(task="trend"), metadata=bearer(k["desk"]))).text == "hello"
                answered += 1

        await asyncio.gather(good(), *(wrong(lane) for lane in range(lanes)))
    assert refused == WRONG_KEYS and answered > 0


def test_a_revoke_on_one_replica_is_seen_by_the_other(tmp_path: Path) -> None:
    text = config(tmp_path / "state", refresh_s=0.2)
    (tmp_path / "keys.toml").write_text(text)
    key = keys_cli(tmp_path / "keys.toml", "create", "desk")
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        replicas.append(start_gateway(text, tmp_path / name, env=keys_file(tmp_path / "state")))
    try:
        channels = [grpc.insecure_channel(r.target) for r in replicas]
        stubs = [pb_grpc.InferenceGatewayStub(c) for c in channels]
        for stub in stubs:
            assert stub.Generate(ask(), metadata=bearer(key)).text == "hello"
        keys_cli(tmp_path / "keys.toml", "revoke", "desk")

        def refused(stub: pb_grpc.InferenceGatewayStub) -> bool:
            try:
                stub.Generate(ask(), metadata=bearer(key), timeout=5)
            except grpc.RpcError as exc:
                return bool(exc.code() == grpc.StatusCode.UNAUTHENTICATED)
            return False

        for stub in stubs:
            wait_until(lambda stub=stub: refused(stub), timeout_s=10, what="the revoked key refused")  # type: ignore[misc]
        for channel in channels:
            channel.close()
    finally:
        for replica in replicas:
            replica.stop()
    for replica in replicas:
        assert key not in replica.log_text() and key.rsplit("_", 1)[-1] not in replica.log_text()


async def test_the_http_status_table_on_the_openai_door(keyed: Keyed) -> None:
    k = keyed.keys

    def chat(**extra: object) -> dict[str, object]:
        return {"model": "echo", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, **extra}

    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async with httpx.AsyncClient(base_url=keyed.gateway.http_url) as http:
        made_up = "gw_0123456789ab_" + secrets.token_urlsafe(32)
        for headers in ({}, auth(made_up), auth("sk-not-ours"), auth(k["gone"])):
            refused = await http.post("/v1/chat/completions", json=chat(), headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"
        assert (await http.post("/v1/chat/completions", json=chat(task="trend"), headers=auth(k["desk"]))).is_success
        denied = await http.post("/v1/chat/completions", json=chat(), headers=auth(k["desk"]))
        assert denied.status_code == 403 and "may ask only the tasks" in denied.json()["error"]["message"]
        pinned = await http.post("/v1/chat/completions", json=chat(model="openai/gpt-test"), headers=auth(k["private"]))
        assert pinned.status_code == 403 and "local-only" in pinned.json()["error"]["message"]
        while (limited := await http.post("/v1/chat/completions", json=chat(), headers=auth(k["slow"]))).is_success:
            pass  # the gRPC test may have used this minute's request already
        assert limited.status_code == 429 and 0 < int(limited.headers["Retry-After"]) <= 60
        assert "requests per minute" in limited.json()["error"]["message"]
