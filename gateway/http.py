"""The HTTP side port: /healthz and /metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.telemetry import Metrics


def build_app(metrics: Metrics, serving: Callable[[], bool]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        if serving():
            return web.json_response({"status": "serving"})
        return web.json_response({"status": "draining"}, status=503)

    async def metrics_page(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app
