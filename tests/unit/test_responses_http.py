"""POST /v1/responses over real HTTP, read by the openai SDK's `client.responses`, with the scripted answerer of
test_openai_http (it answers at once, refuses up front, or fails mid-stream)."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.core.contracts import Privacy
from gateway.core.errors import InvalidArgument, Unavailable
from tests.unit import test_openai_http as chat_door
from tests.unit.test_openai_http import Scripted, Start

start = chat_door.start  # the chat door's fixture: an in-process gateway HTTP app around a Scripted answerer


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)


async def test_a_plain_response_with_the_gateway_object_and_headers(start: Start) -> None:
    answerer = Scripted()
    client = sdk(await start(answerer))
    raw = await client.responses.with_raw_response.create(
        model="echo",
        input="Is the trend up?",
        instructions="Be brief.",
        max_output_tokens=9,
        metadata={"desk": "rates"},
        extra_body={"privacy": "local_only"},
    )
    response = raw.parse()
    assert response.output_text == "The trend is up"
    assert (response.status, response.instructions, response.metadata) == ("completed", "Be brief.", {"desk": "rates"})
    assert response.usage is not None and response.usage.total_tokens == 9
    gateway: dict[str, Any] = response.gateway  # type: ignore[attr-defined]
    assert (gateway["tier"], gateway["confidence"]) == ("local", 0.93)
    assert raw.headers["x-gateway-tier"] == "local"
    seen = answerer.seen[-1]
    assert [m.content for m in seen.messages] == ["Be brief.", "Is the trend up?"]
    assert (seen.max_tokens, seen.privacy) == (9, Privacy.LOCAL_ONLY)


async def test_a_stream_is_read_by_the_sdk_and_its_stream_helper(start: Start) -> None:
    client = sdk(await start(Scripted()))
    stream = await client.responses.create(model="echo", input="Is the trend up?", stream=True)
    kinds: list[str] = []
    deltas: list[str] = []
    last: Any = None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        last = event
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert deltas == ["The", " trend is up"]
    assert last.response.output_text == "The trend is up"
    assert last.response.gateway["tier"] == "local"

    async with client.responses.stream(model="echo", input="Is the trend up?") as helper:
        async for _ in helper:
            pass
        final = await helper.get_final_response()  # the SDK rebuilds the response from the events
    assert final.output_text == "The trend is up"


async def test_structured_output_reaches_the_request_and_parse_reads_it(start: Start) -> None:
    answerer = Scripted()
    client = sdk(await start(answerer))
    schema = {
        "type": "object",
        "properties": {"signal": {"type": "string"}},
        "required": ["signal"],
        "additionalProperties": False,
    }
    await client.responses.create(
        model="echo",
        input="signal?",
        text={"format": {"type": "json_schema", "name": "trade", "schema": schema, "strict": True}},
    )
    fmt = answerer.seen[-1].response_format
    assert fmt is not None and (fmt.name, fmt.strict) == ("trade", True)


async def test_bad_input_is_openais_400_naming_the_field(start: Start) -> None:
    client = sdk(await start(Scripted()))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.responses.create(model="echo", input="x", previous_response_id="resp_1")
    assert caught.value.param == "previous_response_id"  # type: ignore[attr-defined]
    assert "send the whole conversation in input" in caught.value.message
    with pytest.raises(openai.BadRequestError) as store:
        await client.responses.create(model="echo", input="x", store=True)
    assert store.value.param == "store"  # type: ignore[attr-defined]


async def test_a_refused_stream_gets_its_status_and_a_failure_mid_stream_an_error_event(start: Start) -> None:
    refused = sdk(await start(Scripted(refuse=InvalidArgument("task: 'nope' is not a task"))))
    with pytest.raises(openai.BadRequestError) as caught:
        await refused.responses.create(model="echo", input="x", stream=True)
    assert caught.value.param == "task"  # type: ignore[attr-defined]

    failing = sdk(await start(Scripted(fail_mid_stream=Unavailable("every provider failed"))))
    stream = await failing.responses.create(model="echo", input="x", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "error"
    assert (events[-1].code, events[-1].message) == ("unavailable", "every provider failed")  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))


async def test_a_passed_deadline_is_504_and_a_stream_mid_deadline_ends_with_an_error_event(start: Start) -> None:
    answerer = Scripted(block=True)
    client = sdk(await start(answerer))
    with pytest.raises(openai.APIStatusError) as caught:
        await client.responses.create(model="echo", input="x", extra_headers={"x-gateway-timeout-ms": "50"})
    assert (caught.value.status_code, caught.value.code) == (504, "deadline_exceeded")  # type: ignore[attr-defined]
    assert answerer.cancelled.is_set()

    answerer.cancelled.clear()
    stream = await client.responses.create(
        model="echo", input="x", stream=True, extra_headers={"x-gateway-timeout-ms": "500"}
    )
    events = [event async for event in stream]
    assert events[-1].type == "error"
    assert events[-1].code == "deadline_exceeded"  # type: ignore[union-attr]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "The"
    assert answerer.cancelled.is_set()
