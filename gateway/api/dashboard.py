"""The dashboard on the HTTP side port: a static page at / that polls /api/usage and /api/usage/series.

The page and GetUsage read the same UsageReport, so what it shows matches
`python -m gateway usage`. Both endpoints take `?day=YYYY-MM-DD` (UTC, within
[usage] retention_days; default today) and `?client=NAME` (API key name or
certificate subject); /api/usage/series also `bucket_s` (default 60): the day's
series as compact arrays, bucketed here so the page stays light however many
requests there were. Prompt text appears only with [usage] record_prompts.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from aiohttp import web

from gateway.core.errors import GatewayError
from gateway.observe.usage_report import UsageReport, UsageReporter, series_json
from gateway.state.keys.token import NAME_RULE, valid_name

DEFAULT_BUCKET_S = 60


class Dashboard:
    def __init__(self, reporter: UsageReporter, *, refresh_s: float, recent: int, show_prompts: bool) -> None:
        self._reporter = reporter
        self._refresh_s = refresh_s
        self._recent = recent
        self._show_prompts = show_prompts
        self._page: bytes | None = None

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.page),
            web.get("/api/usage", self.api_usage),
            web.get("/api/usage/series", self.api_series),
        ]

    async def page(self, _: web.Request) -> web.Response:
        if self._page is None:
            self._page = await asyncio.to_thread(
                resources.files("gateway.api").joinpath("static/dashboard.html").read_bytes
            )
        return web.Response(body=self._page, content_type="text/html", headers={"Cache-Control": "no-cache"})

    async def api_usage(self, request: web.Request) -> web.Response:
        report = await self._report(request, recent=self._recent)
        if isinstance(report, web.Response):
            return report
        body = report.to_json(show_prompts=self._show_prompts)
        body["refresh_s"] = self._refresh_s
        body["oldest_day"], body["today"] = self._reporter.days()
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def api_series(self, request: web.Request) -> web.Response:
        raw = request.query.get("bucket_s", str(DEFAULT_BUCKET_S))
        if not raw.isdigit():
            return _bad_request("bucket_s", f"bucket_s: {raw!r} is not a whole number of seconds")
        report = await self._report(request, bucket_s=int(raw))
        if isinstance(report, web.Response):
            return report
        return web.json_response(series_json(report), headers={"Cache-Control": "no-store"})

    async def _report(self, request: web.Request, *, recent: int = 0, bucket_s: int = 0) -> UsageReport | web.Response:
        """The report the query asks for, or a 400 naming the parameter that is wrong."""
        client = request.query.get("client", "")
        if client and not valid_name(client):
            return _bad_request("client", f"client: {NAME_RULE}")
        try:
            return await self._reporter.report(
                recent=recent, client=client, day=request.query.get("day", ""), bucket_s=bucket_s
            )
        except GatewayError as exc:  # InvalidArgument: "day: ..." or "bucket_s: ..."
            return _bad_request(exc.message.partition(":")[0], exc.message)


def _bad_request(param: str, message: str) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": "invalid_request_error", "param": param}
    return web.json_response({"error": error}, status=400)
