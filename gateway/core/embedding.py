"""What turns text into vectors: the `Embedder` protocol the OpenAI door and the semantic cache share.

The one implementation today is local_models/minilm.py (all-MiniLM-L6-v2 from its
wheel), built from config in gateway/app/embedding.py only when an embedding
feature is configured, so the gateway imports no torch otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Embeddings:
    """One unit-length vector per input text, in input order, and the tokens each text used."""

    vectors: tuple[tuple[float, ...], ...]
    tokens: tuple[int, ...]

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens)


class Embedder(Protocol):
    """Embeds texts off the event loop; vectors are L2-normalised, so a dot product is the cosine."""

    @property
    def name(self) -> str:
        """The model name clients send (`all-MiniLM-L6-v2`)."""
        ...

    @property
    def dimensions(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Vectors for `texts` (at least one); long texts are cut at the model's input length."""
        ...

    async def aclose(self) -> None: ...
