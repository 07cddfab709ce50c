"""The token estimate reserved before a remote call.

None of the SDKs offers an offline tokenizer cheaply (OpenAI's needs tiktoken,
Anthropic's and Gemini's count_tokens are network calls that share the rate
limit, Hugging Face's would download a tokenizer), so the prompt is estimated
from its length: ceil(characters / chars_per_token) plus 4 tokens of framing per
message and 3 for the reply's start, plus the full `max_tokens` the reply may
use. With chars_per_token = 3 (the default; English averages about 4, digits
fewer) the estimate is above what providers report for ordinary prompts, so a
reservation that fits the budget leaves the real usage inside it. The provider's
reported usage replaces the estimate once the call returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gateway.core.contracts import BackendCall

TOKENS_PER_MESSAGE = 4
REPLY_PRIMING_TOKENS = 3


@dataclass(frozen=True, slots=True)
class CharEstimator:
    chars_per_token: float = 3.0

    def __call__(self, call: BackendCall) -> int:
        chars = sum(len(message.content) for message in call.messages)
        prompt = (
            math.ceil(chars / self.chars_per_token) + TOKENS_PER_MESSAGE * len(call.messages) + REPLY_PRIMING_TOKENS
        )
        return prompt + max(call.max_tokens, 0)
