"""TLS and mutual TLS on both ports of a gateway process, with certificates made at test time; and the refusal
to serve plaintext off loopback unless allow_insecure says so."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from gateway.v1 import gateway_pb2 as pb
from gateway.v1 import gateway_pb2_grpc as pb_grpc
from tests.certificates import Certificates, make_certificates
from tests.gateway_process import ROOT, GatewayProcess, free_port
from tests.integration.test_api_keys import ask, bearer, keys_cli


def write(certs: Certificates, where: Path) -> dict[str, Path]:
    files = {
        "ca": certs.ca.cert,
        "server_cert": certs.server.cert,
        "server_key": certs.server.key,
        "client_cert": certs.client.cert,
        "client_key": certs.client.key,
    }
    paths = {}
    for name, pem in files.items():
        paths[name] = where / f"{name}.pem"
        paths[name].write_bytes(pem)
    return paths


def start(config_text: str, workdir: Path, *args: str) -> GatewayProcess:
    """A gateway process, ready once it logs that it listens (its health check would need the certificates)."""
    port, http_port = free_port(), free_port()
    (workdir / "gateway.toml").write_text(config_text)
    log_path = workdir / "gateway.log"
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(workdir / "gateway.toml")]
    command += ["--port", str(port), "--http-port", str(http_port), *args]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log_file, stderr=subprocess.STDOUT
        )
    gateway = GatewayProcess(process, f"localhost:{port}", f"https://localhost:{http_port}", log_path)
    gateway.wait_for_log('"listening"', timeout_s=60)
    return gateway


def tls_config(state_dir: Path, pem: dict[str, Path], *, mutual: bool) -> str:
    client = f'client_ca_file = "{pem["ca"]}"\nrequire_client_cert = true' if mutual else ""
    return f"""
state_dir = "{state_dir}"
[local]
backend = "echo"
[server.tls]
cert_file = "{pem["server_cert"]}"
key_file = "{pem["server_key"]}"
{client}
"""


@pytest.fixture
def pem(tmp_path: Path) -> dict[str, Path]:
    return write(make_certificates(client_name="desk-cert"), tmp_path)


@pytest.fixture
def tls_gateway(tmp_path: Path, pem: dict[str, Path]) -> Iterator[tuple[GatewayProcess, str]]:
    text = tls_config(tmp_path / "state", pem, mutual=False)
    (tmp_path / "keys.toml").write_text(text)
    key = keys_cli(tmp_path / "keys.toml", "create", "desk", "--admin")
    gateway = start(text, tmp_path)
    yield gateway, key
    gateway.stop()


def test_tls_on_both_ports(tls_gateway: tuple[GatewayProcess, str], pem: dict[str, Path]) -> None:
    gateway, key = tls_gateway
    credentials = grpc.ssl_channel_credentials(pem["ca"].read_bytes())
    with grpc.secure_channel(gateway.target, credentials) as channel:
        assert pb_grpc.InferenceGatewayStub(channel).Generate(ask(), metadata=bearer(key), timeout=10).text == "hello"
    with grpc.insecure_channel(gateway.target) as plain:
        with pytest.raises(grpc.RpcError) as refused:
            pb_grpc.InferenceGatewayStub(plain).Generate(ask(), metadata=bearer(key), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    context = ssl.create_default_context(cafile=str(pem["ca"]))
    with httpx.Client(base_url=gateway.http_url, verify=context) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/api/usage", headers={"Authorization": f"Bearer {key}"}).json()["requests"] == 1
    with httpx.Client(base_url=gateway.http_url.replace("https", "http")) as plain_http, pytest.raises(httpx.HTTPError):
        plain_http.get("/healthz")
    assert "TLS" in gateway.wait_for_log("API keys required")


def test_mutual_tls_names_the_caller_after_its_certificate(tmp_path: Path, pem: dict[str, Path]) -> None:
    text = tls_config(tmp_path / "state", pem, mutual=True)
    gateway = start(text, tmp_path)
    try:
        assert "authentication off (no API keys), TLS with client certificates required" in gateway.log_text()
        with_cert = grpc.ssl_channel_credentials(
            pem["ca"].read_bytes(), pem["client_key"].read_bytes(), pem["client_cert"].read_bytes()
        )
        with grpc.secure_channel(gateway.target, with_cert) as channel:
            stub = pb_grpc.InferenceGatewayStub(channel)
            assert stub.Generate(ask(), timeout=10).text == "hello"
            usage = stub.GetUsage(pb.GetUsageRequest(client="desk-cert"), timeout=10)
            assert usage.requests == 1  # recorded under the certificate's subject
        without = grpc.ssl_channel_credentials(pem["ca"].read_bytes())
        with grpc.secure_channel(gateway.target, without) as channel, pytest.raises(grpc.RpcError):
            pb_grpc.InferenceGatewayStub(channel).Generate(ask(), timeout=5)

        context = ssl.create_default_context(cafile=str(pem["ca"]))
        context.load_cert_chain(pem["client_cert"], pem["client_key"])
        with httpx.Client(base_url=gateway.http_url, verify=context) as http:
            body = http.get("/api/usage?client=desk-cert").json()
            assert body["recent"][0]["client_id"] == "desk-cert"
        no_cert = ssl.create_default_context(cafile=str(pem["ca"]))
        with httpx.Client(base_url=gateway.http_url, verify=no_cert) as http, pytest.raises(httpx.HTTPError):
            http.get("/healthz")
    finally:
        gateway.stop()


def test_plaintext_off_loopback_is_refused_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "gateway.toml").write_text(f'state_dir = "{tmp_path}"\n[local]\nbackend = "echo"\n')
    command = [sys.executable, "-m", "gateway", "serve", "--config", str(tmp_path / "gateway.toml")]
    refused = subprocess.run(
        [*command, "--host", "0.0.0.0", "--port", str(free_port())],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert "server.host = '0.0.0.0' is not a loopback address and TLS is off" in refused.stderr
    assert "server.allow_insecure = true" in refused.stderr
