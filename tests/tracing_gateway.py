"""A real gateway process whose spans go to the OpenTelemetry SDK's in-memory exporter, written as JSON on exit.

    python -m tests.tracing_gateway SPANS.json serve --config gateway.toml --port P --http-port H

The same server as `python -m gateway serve` (the config's `[tracing]` must be enabled); only the
exporter differs: spans are kept in memory, and after SIGTERM has drained the server (which
flushes the tracer) they are written to SPANS.json, one object per span (the SDK's to_json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app.server import serve
from gateway.config import load_config
from gateway.observe.logs import setup_logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.tracing_gateway")
    parser.add_argument("spans", type=Path)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    overrides = {"server.port": args.port, "server.http_port": args.http_port}
    config = load_config(args.config, os.environ, overrides)
    setup_logging(config.server.log_level)
    exporter = InMemorySpanExporter()
    asyncio.run(serve(config, span_exporter=exporter))
    spans = [json.loads(span.to_json()) for span in exporter.get_finished_spans()]
    args.spans.write_text(json.dumps(spans))


if __name__ == "__main__":
    main()
