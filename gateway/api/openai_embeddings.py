"""POST /v1/embeddings on the OpenAI door: the local embedding model, in OpenAI's request and response shape.

Served when `[embeddings] enabled = true`. The request takes `input` (a string or a list
of strings), `model` (the embedding model's name, as GET /v1/models lists it),
`encoding_format` (`float`, or `base64`: little-endian float32, what the openai SDKs
ask for by default) and `dimensions` (only the model's own, 384). Token-id input and any
other parameter get a 400 naming it. The vectors are unit length (cosine = dot product).
"""

from __future__ import annotations

import base64
import json
import logging
import struct
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.api.http_errors import error_response
from gateway.core.contracts import ModelEntry, Tier
from gateway.core.embedding import Embedder, Embeddings

log = logging.getLogger(__name__)
MAX_INPUTS = 2048  # OpenAI's own bound on one request's inputs
KNOWN = frozenset({"input", "model", "encoding_format", "dimensions", "user"})
JSON_TYPES = frozenset({"application/json"})


class BadEmbeddingParam(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


class EmbeddingRoutes:
    def __init__(self, embedder: Embedder, *, max_request_bytes: int) -> None:
        self._embedder = embedder
        self._max_request_bytes = max_request_bytes

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v1/embeddings", self.create)]

    def models(self) -> list[ModelEntry]:
        return [ModelEntry(self._embedder.name, Tier.LOCAL, "embeddings", task="embeddings")]

    async def create(self, http_request: web.Request) -> web.Response:
        if http_request.content_type not in JSON_TYPES:
            given = http_request.headers.get("Content-Type", "(none)")
            return error_response(
                415, f"Content-Type: send application/json (got {given!r})", code="unsupported_media_type"
            )
        try:
            raw = await http_request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                413,
                f"body: over the limit of {self._max_request_bytes} bytes (server.max_request_bytes); "
                "send fewer or shorter inputs",
                code="request_too_large",
            )
        try:
            texts, encoding = self._parse(raw)
        except BadEmbeddingParam as exc:
            return error_response(400, str(exc), code="invalid_request_error", param=exc.param)
        try:
            embedded = await self._embedder.embed(texts)
        except Exception as exc:  # noqa: BLE001 - the model failed; the client gets OpenAI's error object
            log.warning("embedding failed", extra={"error": repr(exc)})
            return error_response(503, "the embedding model failed; try again", code="server_error")
        return web.json_response(self._body(embedded, encoding), dumps=_dumps)

    # -- steps -------------------------------------------------------------------------------------

    def _parse(self, raw: bytes) -> tuple[list[str], str]:
        try:
            body = json.loads(raw)
        except ValueError:
            raise BadEmbeddingParam("body", "not valid JSON; send a JSON object") from None
        if not isinstance(body, dict):
            raise BadEmbeddingParam("body", "expected a JSON object")
        for name in body:
            if name not in KNOWN:
                raise BadEmbeddingParam(name, f"unknown parameter; /v1/embeddings takes {', '.join(sorted(KNOWN))}")
        model = body.get("model")
        if model != self._embedder.name:
            raise BadEmbeddingParam("model", f"{model!r} is not an embedding model here; use '{self._embedder.name}'")
        dimensions = body.get("dimensions")
        if dimensions is not None and (isinstance(dimensions, bool) or dimensions != self._embedder.dimensions):
            raise BadEmbeddingParam(
                "dimensions",
                f"{dimensions!r}: {self._embedder.name} has {self._embedder.dimensions} dimensions only; "
                "leave dimensions out or send that number",
            )
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise BadEmbeddingParam("encoding_format", f"{encoding!r} is not 'float' or 'base64'")
        return _texts(body.get("input")), str(encoding)

    def _body(self, embedded: Embeddings, encoding: str) -> dict[str, Any]:
        data = [
            {"object": "embedding", "index": i, "embedding": _encode(vector, encoding)}
            for i, vector in enumerate(embedded.vectors)
        ]
        tokens = embedded.total_tokens
        return {
            "object": "list",
            "data": data,
            "model": self._embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise BadEmbeddingParam("input", "expected a non-empty string or a non-empty list of strings")
    if len(value) > MAX_INPUTS:
        raise BadEmbeddingParam("input", f"{len(value)} inputs; send at most {MAX_INPUTS} per request")
    for i, item in enumerate(value):
        if isinstance(item, int | list):
            raise BadEmbeddingParam("input", "token-id input is not supported; send the text itself")
        if not isinstance(item, str) or not item:
            raise BadEmbeddingParam(f"input[{i}]", "expected a non-empty string")
    return value


def _encode(vector: Sequence[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return list(vector)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _dumps(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"))
