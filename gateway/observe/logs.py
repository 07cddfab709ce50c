"""Structured JSON logs on stderr. Prompt text never appears at INFO."""

from __future__ import annotations

import json
import logging
import sys
import time

from gateway.core.contracts import Result

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "urllib3", "filelock", "transformers"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RequestLog:
    """Router observer: one INFO line per answered request, without prompt or answer text."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("gateway.requests")

    def record(self, result: Result) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        self._log.info(
            "request answered",
            extra={
                "request_id": result.request_id,
                "task": result.task,
                "tier": result.tier.value,
                "provider": result.provider,
                "model": result.model,
                "confidence": None if result.confidence is None else round(result.confidence, 4),
                "escalation": result.escalation.value,
                "prompt_tokens": result.usage.prompt_tokens,
                "completion_tokens": result.usage.completion_tokens,
                "latency_ms": round(result.latency_ms, 2),
            },
        )
