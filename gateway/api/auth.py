"""Authentication at the doors: who is calling, from an `authorization: Bearer` key or a client certificate.

Both doors call `Authenticator.caller` and put the name it returns on the
domain Request (`client`); what that caller may do is decided behind them, in
gateway/routing/access.py. With no keys at all, authentication is off: any
authorization header is ignored (OpenAI SDKs always send one), and the caller
is the certificate's subject when mutual TLS verified one, else anonymous ("").

Messages never repeat what the client sent in the header.
"""

from __future__ import annotations

import base64
import binascii

from gateway.core.errors import Unauthenticated
from gateway.state.keys.table import KeyTable
from gateway.state.keys.token import valid_name

MAX_HEADER_CHARS = 256
MISSING = "missing API key: send the header 'authorization: Bearer <key>'"
MALFORMED = "invalid authorization header: expected 'Bearer gw_<id>_<secret>'"


class Authenticator:
    def __init__(self, keys: KeyTable) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return self._keys.enabled

    def caller(self, authorization: list[str], certificate_name: str = "") -> str:
        """The caller's name; Unauthenticated when keys exist and none of these proves who it is.

        `authorization`: every authorization header value sent (more than one is refused);
        `certificate_name`: the subject (CN) of a client certificate that TLS verified, "" when none.
        """
        if certificate_name and not valid_name(certificate_name):
            raise Unauthenticated("the client certificate's subject (CN) is not a usable client name")
        if not self._keys.enabled:
            return certificate_name
        if len(authorization) > 1:
            raise Unauthenticated("send one authorization header, not several")
        if authorization:
            return self._keys.authenticate(_bearer(authorization[0])).name
        if certificate_name:
            key = self._keys.policy(certificate_name)
            if key is None:
                raise Unauthenticated("no active API key is named after this client certificate's subject")
            return key.name
        raise Unauthenticated(MISSING)

    def is_admin(self, name: str) -> bool:
        key = self._keys.policy(name)
        return key is not None and key.admin


def _bearer(value: str) -> str:
    """The key in `Bearer <key>`, or the password of `Basic <base64 user:key>` (how a browser sends it for the
    dashboard)."""
    if len(value) > MAX_HEADER_CHARS or not value.isascii() or not value.isprintable():
        raise Unauthenticated(MALFORMED)
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "basic" and token:
        try:
            token = base64.b64decode(token, validate=True).decode("ascii").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated(MALFORMED) from None
        scheme = "bearer"
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(MALFORMED)
    return token
