"""The dashboard on the HTTP side port: a static page at / that polls /api/usage.

The page and GetUsage read the same UsageReport, so what it shows matches
`python -m gateway usage`; `/api/usage?client=NAME` limits the figures and the
recent requests to one caller (API key name or certificate subject). Prompt text
appears only with [usage] record_prompts.
"""

from __future__ import annotations

import asyncio
from importlib import resources

from aiohttp import web

from gateway.observe.usage_report import UsageReporter
from gateway.state.keys.token import NAME_RULE, valid_name


class Dashboard:
    def __init__(self, reporter: UsageReporter, *, refresh_s: float, recent: int, show_prompts: bool) -> None:
        self._reporter = reporter
        self._refresh_s = refresh_s
        self._recent = recent
        self._show_prompts = show_prompts
        self._page: bytes | None = None

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self.page), web.get("/api/usage", self.api_usage)]

    async def page(self, _: web.Request) -> web.Response:
        if self._page is None:
            self._page = await asyncio.to_thread(
                resources.files("gateway.api").joinpath("static/dashboard.html").read_bytes
            )
        return web.Response(body=self._page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def api_usage(self, request: web.Request) -> web.Response:
        client = request.query.get("client", "")
        if client and not valid_name(client):
            error = {"message": f"client: {NAME_RULE}", "type": "invalid_request_error", "param": "client"}
            return web.json_response({"error": error}, status=400)
        report = await self._reporter.report(recent=self._recent, client=client)
        body = report.to_json(show_prompts=self._show_prompts)
        body["refresh_s"] = self._refresh_s
        return web.json_response(body, headers={"Cache-Control": "no-store"})
