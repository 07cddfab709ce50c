"""Domain Result -> OpenAI Responses JSON: the `response` object and the streamed events. Pure.

The answer is one assistant `message` item with one `output_text` part. The gateway's own
fields travel in the same `gateway` object as on the chat door (openai_response.gateway_fields),
beside OpenAI's fields on the response object (on a stream: in `response.completed`). A
stream is OpenAI's event sequence: response.created, response.in_progress,
response.output_item.added, response.content_part.added, response.output_text.delta...,
response.output_text.done, response.content_part.done, response.output_item.done, then
response.completed (response.incomplete when the answer ran out of tokens); each event is
`event: <type>` and `data: <json>` with a rising `sequence_number`.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.api import openai_response
from gateway.api.http_errors import gateway_error_body
from gateway.api.responses_request import ResponsesCall
from gateway.core.contracts import Result
from gateway.core.errors import GatewayError

RESPONSE_ID_PREFIX = "resp_"
MESSAGE_ID_PREFIX = "msg_"


def response_id(request_id: str) -> str:
    return RESPONSE_ID_PREFIX + request_id


def message_id(request_id: str) -> str:
    return MESSAGE_ID_PREFIX + request_id


def _incomplete(result: Result) -> bool:
    return openai_response.finish_reason(result.finish_reason) == "length"


def _logprobs(call: ResponsesCall, result: Result) -> list[dict[str, Any]]:
    if not call.logprobs:
        return []
    found = openai_response.logprobs(result, call.chat.request.top_logprobs)
    return [] if found is None else list(found["content"])


def _text_part(text: str, logprobs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs}


def _message(call: ResponsesCall, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": message_id(call.chat.request.request_id),
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": content,
    }


def _usage(result: Result) -> dict[str, Any]:
    return {
        "input_tokens": result.usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": result.usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": result.usage.total,
    }


def _skeleton(call: ResponsesCall, *, created: int, model: str) -> dict[str, Any]:
    """The response object's fields that do not depend on the answer (what the request asked, echoed)."""
    return {
        "id": response_id(call.chat.request.request_id),
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": call.instructions,
        "max_output_tokens": call.max_output_tokens,
        "metadata": dict(call.metadata),
        "model": model,
        "output": [],
        "parallel_tool_calls": False,
        "previous_response_id": None,
        "store": False,
        "temperature": call.temperature,
        "text": {"format": dict(call.text_format), "verbosity": "medium"},
        "tool_choice": "none",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
    }


def response_body(call: ResponsesCall, result: Result, *, created: int, completed: int) -> dict[str, Any]:
    """The finished `response` object with the `gateway` extension."""
    incomplete = _incomplete(result)
    status = "incomplete" if incomplete else "completed"
    body = _skeleton(call, created=created, model=result.model)
    body.update(
        status=status,
        completed_at=None if incomplete else completed,
        incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
        output=[_message(call, status, [_text_part(result.text, _logprobs(call, result))])],
        usage=_usage(result),
        gateway=openai_response.gateway_fields(result),
    )
    return body


class ResponseEvents:
    """The server-sent events of one streamed response, numbered in order (one instance per stream)."""

    def __init__(self, call: ResponsesCall, *, created: int) -> None:
        self._call = call
        self._created = created
        self._sequence = 0
        self._pieces: list[str] = []
        request_id = call.chat.request.request_id
        self._item_id = message_id(request_id)

    def opening(self) -> list[bytes]:
        """response.created, response.in_progress, the message item and its text part, still empty."""
        response = _skeleton(self._call, created=self._created, model=self._call.chat.request.model)
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
            self._event("response.output_item.added", output_index=0, item=_message(self._call, "in_progress", [])),
            self._event("response.content_part.added", **self._where(), part=_text_part("", [])),
        ]

    def delta(self, text: str) -> bytes:
        self._pieces.append(text)
        return self._event("response.output_text.delta", **self._where(), delta=text, logprobs=[])

    def closing(self, result: Result, *, completed: int) -> list[bytes]:
        """The text's done events (with token logprobs when asked), the item's, then the finished response.

        The text is what the deltas carried; a result whose text differs (a stream that sent nothing
        before its result) has its text sent as one last delta first."""
        events: list[bytes] = []
        sent = "".join(self._pieces)
        if result.text != sent and result.text.startswith(sent):
            events.append(self.delta(result.text[len(sent) :]))
        text = "".join(self._pieces)
        logprobs = _logprobs(self._call, result)
        part = _text_part(text, logprobs)
        body = response_body(self._call, result, created=self._created, completed=completed)
        body["output"] = [_message(self._call, body["status"], [part])]
        last = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        events += [
            self._event("response.output_text.done", **self._where(), text=text, logprobs=logprobs),
            self._event("response.content_part.done", **self._where(), part=part),
            self._event("response.output_item.done", output_index=0, item=body["output"][0]),
            self._event(last, response=body),
        ]
        return events

    def error(self, exc: GatewayError) -> bytes:
        """OpenAI's `error` event: the error object's code, message and param, in the stream."""
        error = gateway_error_body(exc)["error"]
        return self._event("error", code=error["code"], message=error["message"], param=error["param"])

    def _where(self) -> dict[str, Any]:
        return {"item_id": self._item_id, "output_index": 0, "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: ".encode() + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"
