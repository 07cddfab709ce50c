"""A real gateway process whose shared-state stores fail on cue: for the state-outage tests.

    GATEWAY_TEST_FAULTS=FILE python -m tests.faulty_state_gateway serve --config gateway.toml --port P --http-port H

The same server as `python -m gateway serve` over the same SQLite stores; each
store call first reads FILE, one fault per line, `store.method` or
`store.method:name` (only calls whose first argument starts with `name`, e.g.
`rate_limits.try_acquire:openai`), and raises UNAVAILABLE as an unreachable
Redis does when its call is listed. The test rewrites FILE between steps, so one
process goes through reserve, rate-limit and reconcile outages in turn.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.app.server import serve
from gateway.config import Config, load_config
from gateway.core.errors import Unavailable
from gateway.observe.logs import setup_logging
from gateway.state.open import SharedState, open_state

STORES = ("ledger", "key_quotas", "rate_limits", "breakers", "cache", "usage")


class Faulty:
    """A store whose calls fail while FILE lists them; everything else goes to the real store."""

    def __init__(self, name: str, inner: Any, faults: Path) -> None:
        self._name = name
        self._inner = inner
        self._faults = faults

    def __getattr__(self, method: str) -> Any:
        real = getattr(self._inner, method)
        if not callable(real) or method.startswith("_"):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._failing(method, args):
                return _raise(f"{self._name} unreachable (test fault {self._name}.{method})")
            return real(*args, **kwargs)

        return call

    def _failing(self, method: str, args: tuple[Any, ...]) -> bool:
        try:
            lines = self._faults.read_text().split()
        except FileNotFoundError:
            return False
        for line in lines:
            where, _, name = line.partition(":")
            if where == f"{self._name}.{method}" and (not name or (args and str(args[0]).startswith(name))):
                return True
        return False


def _raise(message: str) -> Awaitable[None]:
    async def fail() -> None:
        raise Unavailable(message)

    return fail()


def faulty_state(faults: Path) -> Callable[[Config], SharedState]:
    def opener(config: Config) -> SharedState:
        state = open_state(config)
        wrapped = {name: Faulty(name, getattr(state, name), faults) for name in STORES if getattr(state, name)}
        return dataclasses.replace(state, **wrapped)

    return opener


def main() -> None:
    parser = argparse.ArgumentParser(prog="tests.faulty_state_gateway")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    overrides = {"server.port": args.port, "server.http_port": args.http_port}
    config = load_config(args.config, os.environ, overrides)
    setup_logging(config.server.log_level)
    asyncio.run(serve(config, state_opener=faulty_state(Path(os.environ["GATEWAY_TEST_FAULTS"]))))


if __name__ == "__main__":
    main()
