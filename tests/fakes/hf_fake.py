"""Hugging Face chat completion on the wire: the OpenAI-like format TGI and the HF router speak."""

from __future__ import annotations

from dataclasses import dataclass

from tests.fakes.openai_fake import FakeOpenAI


@dataclass
class FakeHuggingFace(FakeOpenAI):
    tgi: bool = True
