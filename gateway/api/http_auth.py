"""Authentication on the HTTP port: an aiohttp middleware in front of every route but the probes.

The caller's name goes into the aiohttp request under CLIENT_KEY, where the
OpenAI-compatible handlers read it for `Request.client`. Once keys exist, the
dashboard and everything else outside /v1/ (usage figures, per-request records)
need a key with the admin role: 401 without a key, 403 with another one.
/healthz and /metrics stay open for probes and scrapers. A browser opening the
dashboard is asked for a user name (any) and password (the admin key).

Error bodies use OpenAI's error shape and never repeat the header sent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.api.auth import Authenticator
from gateway.api.http_errors import error_response
from gateway.core.errors import GatewayError

CLIENT_KEY = web.RequestKey("gateway.client", str)
OPEN_PATHS = frozenset({"/healthz", "/metrics"})
BROWSER_CHALLENGE = 'Basic realm="gateway: any user name, an admin API key as the password"'
CLIENT_PATH_PREFIX = "/v1/"  # what any key may call; everything else outside OPEN_PATHS is for admin keys

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(authenticator: Authenticator) -> Any:
    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        try:
            caller = authenticator.caller(request.headers.getall("Authorization", []), _certificate_name(request))
        except GatewayError as exc:
            admin_only = not request.path.startswith(CLIENT_PATH_PREFIX)
            challenge = BROWSER_CHALLENGE if admin_only else "Bearer"  # a browser asks for the key, as a password
            return error_response(401, exc.message, code="unauthenticated", headers={"WWW-Authenticate": challenge})
        admin_only = not request.path.startswith(CLIENT_PATH_PREFIX)
        if authenticator.enabled and admin_only and not authenticator.is_admin(caller):
            return error_response(403, "this page needs an admin API key", code="permission_denied")
        request[CLIENT_KEY] = caller
        return await handler(request)

    return authenticate


def _certificate_name(request: web.Request) -> str:
    """The subject (CN) of a client certificate that TLS verified against [server.tls] client_ca_file."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return ""
    names = [value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName"]
    return str(names[0]) if len(names) == 1 else ""
