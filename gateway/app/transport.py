"""TLS for the gRPC and HTTP ports, and the rule that plaintext stays on loopback unless allowed.

[server.tls] cert_file/key_file turn TLS on for both ports (and the probe port).
client_ca_file adds mutual TLS: with require_client_cert = true both ports refuse
clients without a certificate signed by that CA; with false the HTTP port checks
a certificate when one is sent (gRPC in Python cannot ask for an optional one, so
it asks for none). A verified certificate's subject (CN) names the caller.
"""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import grpc

from gateway.config import Config, ConfigError, TlsConfig


def check_transport(config: Config) -> None:
    """Raise ConfigError, naming the key to change, for TLS settings that cannot work or plaintext off loopback."""
    tls = config.server.tls
    if tls.cert_file or tls.key_file:
        for key, value in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
            _readable(f"server.tls.{key}", value)
    if tls.client_ca_file:
        _readable("server.tls.client_ca_file", tls.client_ca_file)
        if not tls.cert_file:
            raise ConfigError("server.tls.client_ca_file needs server.tls.cert_file and key_file (mutual TLS is TLS)")
    if tls.require_client_cert and not tls.client_ca_file:
        raise ConfigError("server.tls.require_client_cert = true needs server.tls.client_ca_file (the clients' CA)")
    if tls.cert_file or config.server.allow_insecure:
        return
    server = config.server
    for key, host in (
        ("server.host", server.host),
        ("server.http_host", server.http_host),
        ("server.probe_host", server.probe_host),
    ):
        if host and not is_loopback(host):
            raise ConfigError(
                f"{key} = '{host}' is not a loopback address and TLS is off: set [server.tls] cert_file and "
                "key_file, or set server.allow_insecure = true to serve plaintext there on purpose"
            )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def grpc_credentials(tls: TlsConfig) -> grpc.ServerCredentials | None:
    """None when TLS is off."""
    if not tls.cert_file:
        return None
    key, cert = Path(tls.key_file).read_bytes(), Path(tls.cert_file).read_bytes()
    ca = Path(tls.client_ca_file).read_bytes() if tls.require_client_cert else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=tls.require_client_cert)


def http_ssl_context(tls: TlsConfig, *, client_certificates: bool = True) -> ssl.SSLContext | None:
    """None when TLS is off. `client_certificates=False`: the probe port, which asks for none."""
    if not tls.cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    if client_certificates and tls.client_ca_file:
        context.load_verify_locations(cafile=tls.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return context


def describe_transport(config: Config) -> str:
    tls = config.server.tls
    if not tls.cert_file:
        return "plaintext" + (" (server.allow_insecure = true)" if config.server.allow_insecure else " on loopback")
    if tls.require_client_cert:
        return "TLS with client certificates required (mutual TLS)"
    return "TLS" + (" (client certificates checked on HTTP when sent)" if tls.client_ca_file else "")


def _readable(key: str, value: str) -> None:
    if not value:
        raise ConfigError(f"{key} is empty; set both server.tls.cert_file and server.tls.key_file, or neither")
    if not Path(value).is_file():
        raise ConfigError(f"{key} = '{value}' is not a readable file")
