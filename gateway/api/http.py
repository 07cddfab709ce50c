"""The HTTP side port: /healthz, /metrics, the dashboard (/ and /api/usage) and the OpenAI-compatible /v1 when given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.auth import Authenticator
from gateway.api.dashboard import Dashboard
from gateway.api.http_auth import auth_middleware
from gateway.api.openai_http import OpenAIRoutes
from gateway.observe.metrics import Metrics


async def _nothing() -> None:
    return None


def build_app(
    metrics: Metrics,
    serving: Callable[[], bool],
    *,
    before_scrape: Callable[[], Awaitable[None]] = _nothing,
    dashboard: Dashboard | None = None,
    authenticator: Authenticator | None = None,
    probes: bool = True,
    openai: OpenAIRoutes | None = None,
    max_request_bytes: int = 1 << 20,
) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        if serving():
            return web.json_response({"status": "serving"})
        return web.json_response({"status": "draining"}, status=503)

    async def metrics_page(_: web.Request) -> web.Response:
        await before_scrape()
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application(client_max_size=max_request_bytes)  # larger bodies: 413
    if authenticator is not None:  # API keys and the admin role (gateway/api/http_auth.py)
        app.middlewares.append(auth_middleware(authenticator))
    if probes:  # false: [server] probe_host serves them, from an app of their own (build_app with defaults)
        app.router.add_get("/healthz", healthz)
        app.router.add_get("/metrics", metrics_page)
    if dashboard is not None:
        app.router.add_routes(dashboard.routes())
    if openai is not None:
        app.router.add_routes(openai.routes())
    return app
