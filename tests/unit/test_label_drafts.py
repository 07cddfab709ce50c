"""Label drafts and prompt prefixes: the pieces of the label fast path that need no model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_models.label_drafts import greedy_steps, label_drafts
from local_models.prompt_prefix import PromptPrefixes


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    from local_models.model_store import ensure_embedded_model

    return AutoTokenizer.from_pretrained(ensure_embedded_model(Path.home() / ".cache" / "trading-gateway"))


def test_greedy_steps_accepts_only_what_greedy_decoding_would_choose() -> None:
    eos = {0}
    assert greedy_steps((5, 6), [6, 0], eos, max_tokens=8) == 2  # the label, then the end token
    assert greedy_steps((5, 6), [0, 9], eos, max_tokens=8) == 1  # ended after the first token
    assert greedy_steps((5, 6), [6, 7], eos, max_tokens=8) is None  # ran on past the label
    assert greedy_steps((5, 6), [7, 0], eos, max_tokens=8) is None  # another second token
    assert greedy_steps((5, 6, 7), [6, 7, 1], eos, max_tokens=3) == 2  # max_tokens reached inside the label
    assert greedy_steps((5,), [9], eos, max_tokens=2) == 1  # max_tokens reached right after the first token


def test_drafts_are_the_longest_surface_form_of_each_first_token(tokenizer: Any) -> None:
    labels = ("bullish", "bullish_engulfing", "none")
    drafts = label_drafts(tokenizer, labels)
    bull = tokenizer.encode("bullish_engulfing", add_special_tokens=False)
    assert drafts[bull[0]] == tuple(bull)  # "bull" starts both labels: the longer one is fed
    spaced = tokenizer.encode(" none", add_special_tokens=False)
    assert drafts[spaced[0]] == tuple(spaced)


def test_prefix_is_everything_before_the_last_message_text(tokenizer: Any) -> None:
    prefixes = PromptPrefixes(tokenizer, max_entries=2)
    system = {"role": "system", "content": "Answer with one word: bullish, bearish or neutral."}
    first = [system, {"role": "user", "content": "Acme beats estimates"}]
    second = [system, {"role": "user", "content": "Acme misses estimates and cuts guidance"}]
    ids = [
        list(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True)["input_ids"])
        for m in (first, second)
    ]
    one, two = prefixes.prefix_of(first, ids[0]), prefixes.prefix_of(second, ids[1])
    assert one == two and len(one) > 10
    assert tuple(ids[0][: len(one)]) == one and tuple(ids[1][: len(two)]) == two
    assert tokenizer.decode(list(one)).endswith("user\n")
    other = [{"role": "system", "content": "Say yes or no."}, first[1]]
    assert prefixes.prefix_of(other, ids[0]) == ()  # a prompt that does not start with its prefix has none
    assert prefixes.prefix_of(first, list(one)) == ()  # at least one token must follow the prefix
