"""How the client reaches the gateway: TLS credentials, the bearer key, and the channel built from them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

ChannelOption = tuple[str, str | int]


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS for the channel: the CA that signed the gateway's certificate (None = the system's roots), and
    a client certificate and key for mutual TLS (both or neither)."""

    root_ca: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str = ""  # check the certificate against this name instead of the target's host

    def __post_init__(self) -> None:
        if (self.cert_chain is None) != (self.private_key is None):
            raise ValueError("cert_chain and private_key: give both for mutual TLS, or neither")

    @classmethod
    def from_files(
        cls, *, ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
    ) -> Tls:
        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(read(ca), read(cert), read(key))

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_ca, private_key=self.private_key, certificate_chain=self.cert_chain
        )

    def options(self) -> list[ChannelOption]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """The metadata every call carries: `authorization: Bearer <key>` when a key is set."""
    if api_key is None:
        return ()
    if not api_key or not api_key.isprintable() or any(c.isspace() for c in api_key):
        raise ValueError("api_key: must be a non-empty string without spaces or control characters")
    return (("authorization", f"Bearer {api_key}"),)


def sync_channel(target: str, tls: Tls | None, options: Sequence[ChannelOption]) -> grpc.Channel:
    if tls is None:
        return grpc.insecure_channel(target, options=list(options))
    return grpc.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])


def aio_channel(target: str, tls: Tls | None, options: Sequence[ChannelOption]) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(target, options=list(options))
    return grpc.aio.secure_channel(target, tls.credentials(), options=[*options, *tls.options()])
