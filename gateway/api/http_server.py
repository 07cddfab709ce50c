"""The aiohttp runner the HTTP ports use: a malformed request is refused without repeating its bytes.

aiohttp answers a request it cannot parse (a NUL or a lone CR in a header, a
header too long) itself, before any middleware runs, with a 400 whose body
quotes the offending header line, and logs that line with the exception. Such
a line can hold an API key. Here the answer is the bare status and the log
line names only the kind of error. (aiohttp offers no option for this; the
handler class is swapped in `_make_server`, the runner's hook for building it.)
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger(__name__)


class _QuietRequestHandler(RequestHandler):
    def handle_error(
        self, request: BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
            return super().handle_error(request, status, exc, None)
        log.info("refused a malformed HTTP request", extra={"status": status, "error": type(exc).__name__})
        if request.writer.output_size > 0:
            raise ConnectionError("the response had started; the connection is closed")
        response = web.Response(status=status, text=f"{status} {HTTPStatus(status).phrase}\n")
        response.force_close()
        return response


class _QuietServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayAppRunner(web.AppRunner):
    """web.AppRunner (without an access log) whose connections answer malformed requests quietly."""

    def __init__(self, app: web.Application, **kwargs: object) -> None:
        super().__init__(app, access_log=None, **kwargs)  # type: ignore[arg-type]

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _QuietServer
        return server
