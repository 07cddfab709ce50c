"""The JSON reader of chat completions gives the same Completion as the reader of the SDK's response models."""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from gateway.remote.providers.chat_format import read_completion, read_completion_json

FULL: dict[str, Any] = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "gpt-test-2026",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "BUY"},
            "finish_reason": "length",
            "logprobs": {
                "content": [
                    {
                        "token": "BUY",
                        "logprob": -0.1,
                        "bytes": [66, 85, 89],
                        "top_logprobs": [{"token": "BUY", "logprob": -0.1}, {"token": "SELL", "logprob": -2.5}],
                    }
                ]
            },
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13},
}
BARE: dict[str, Any] = {
    "id": "chatcmpl-2",
    "object": "chat.completion",
    "created": 1,
    "model": "",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}],
}
EMPTY: dict[str, Any] = {"id": "chatcmpl-3", "object": "chat.completion", "created": 1, "model": "m", "choices": []}


@pytest.mark.parametrize("body", [FULL, BARE, EMPTY], ids=["logprobs-usage", "no-content-no-usage", "no-choices"])
def test_json_reader_matches_the_model_reader(body: dict[str, Any]) -> None:
    assert read_completion_json(body, "openai", "gpt-test") == read_completion(
        ChatCompletion.model_validate(body), "openai", "gpt-test"
    )
