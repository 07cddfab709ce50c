"""One llama.cpp engine in this process: xllamacpp's embedded server, its slots and its LoRA adapters.

The only module that imports xllamacpp (a prebuilt wheel: llama.cpp's own server, compiled, no
torch). `Engine` loads a GGUF model with `slots` parallel sequences that llama.cpp decodes
together (continuous batching), and the GGUF LoRA adapters given, each loaded at scale 0: a
request switches its adapter on by naming it in its `lora` field (`lora_scales`).

Every call blocks its thread while llama.cpp works (the model runs in llama.cpp's own threads,
without the GIL); streamed chunks reach `on_chunk` on the calling thread, and `on_chunk`
returning True stops the request, which frees its slot at once.

llama.cpp's server also listens on a loopback port. It is given a random API key that only
this process knows, and the engine uses the port for one thing the in-process calls lack:
tokenizing (label tokens).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Chunk = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class EngineSettings:
    model_path: Path
    slots: int = 8  # sequences decoded together (llama.cpp's --parallel)
    context_length: int = 2048  # tokens per slot (prompt + answer)
    threads: int = 1  # llama.cpp threads for decoding
    batch_threads: int = 1  # llama.cpp threads for prompt processing
    verbosity: int = 0  # llama.cpp's own log threshold (its log goes to stderr)


@dataclass(frozen=True, slots=True)
class EngineRequests:
    """llama.cpp's own count of the requests it holds."""

    processing: int  # in a slot: prompt being processed or tokens being generated
    deferred: int  # waiting for a slot


class EngineError(RuntimeError):
    """The engine could not start (bad model path, an adapter that does not fit the model)."""


class Engine:
    """An xllamacpp server over one model and a fixed list of adapters (loading blocks: call it in a thread)."""

    def __init__(self, settings: EngineSettings, adapters: Sequence[Path] = ()) -> None:
        import xllamacpp  # type: ignore[import-untyped]

        if not settings.model_path.is_file():
            raise EngineError(f"{settings.model_path} is not a GGUF file")
        self.settings = settings
        self.adapters = tuple(adapters)
        self._key = secrets.token_urlsafe(24)
        params = xllamacpp.CommonParams()
        params.model.path = str(settings.model_path)
        params.n_parallel = settings.slots
        params.n_ctx = settings.slots * settings.context_length
        params.cpuparams.n_threads = settings.threads
        params.cpuparams_batch.n_threads = settings.batch_threads
        params.verbosity = settings.verbosity
        params.endpoint_metrics = True
        params.hostnames = ["127.0.0.1"]
        params.port = 0  # any free port: only tokenize is asked there, with the key below
        params.api_keys = [self._key]
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(path), 0.0) for path in self.adapters]
        started = time.perf_counter()
        try:
            self._server: Any = xllamacpp.Server(params)
        except RuntimeError as exc:
            raise EngineError(
                f"llama.cpp could not load {settings.model_path} with adapters {self.adapters}: {exc}"
            ) from exc
        self.address = str(self._server.listening_address)
        self.load_s = time.perf_counter() - started
        log.info(
            "llama.cpp engine loaded",
            extra={"model": str(settings.model_path), "adapters": len(self.adapters), "seconds": round(self.load_s, 2)},
        )

    def lora_scales(self, adapter: Path | None) -> list[dict[str, float]]:
        """The request's `lora` field: every loaded adapter named, `adapter` at 1 and the others at 0.

        Naming all of them keeps the slots' prompt caches honest: llama.cpp drops a slot's cache when
        the scales differ from the request before, which it can only tell when both name them.
        """
        return [{"id": i, "scale": 1.0 if path == adapter else 0.0} for i, path in enumerate(self.adapters)]

    def chat(self, body: Mapping[str, Any], on_chunk: Callable[[Chunk], bool]) -> None:
        """Stream one chat completion; `on_chunk` gets each chunk (or an {"error": ...}) and returns True to stop."""
        self._server.handle_chat_completions(dict(body), on_chunk)

    def tokenize(self, text: str) -> list[tuple[int, str]]:
        """Token ids and their pieces for `text`, as this model tokenizes it (no special tokens)."""
        request = urllib.request.Request(
            f"{self.address}/tokenize",
            data=json.dumps({"content": text, "add_special": False, "with_pieces": True}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.loads(response.read())
        return [(int(t["id"]), str(t["piece"])) for t in data["tokens"]]

    def metrics(self) -> str:
        """llama.cpp's Prometheus text (requests processing and deferred, tokens and seconds so far)."""
        return str(self._server.handle_metrics())

    def requests(self) -> EngineRequests:
        """How many requests llama.cpp is generating and how many wait for a slot (from its metrics)."""
        values = dict.fromkeys(("requests_processing", "requests_deferred"), 0)
        for line in self.metrics().splitlines():
            name, _, value = line.partition(" ")
            key = name.removeprefix("llamacpp:")
            if key in values:
                values[key] = round(float(value))
        return EngineRequests(values["requests_processing"], values["requests_deferred"])

    def close(self) -> None:
        """Stop llama.cpp's loop and free the model (call once no request is inside `chat`)."""
        server, self._server = self._server, None
        del server
