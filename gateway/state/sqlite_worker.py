"""One SQLite connection owned by one thread: every statement runs there, never on the event loop.

Shared by the SQLite stores (cache, usage records, breaker and rate-limit
state, the token ledger, API keys, training rows). The file is opened in WAL
mode on first use, so several gateway processes on one box can share it; it is
created readable by its owner only (0600, and so are the -wal and -shm files
SQLite makes beside it; folders it creates 0700). Transactions submitted while
the thread is busy commit together (gateway/state/sqlite_batch.py).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.core.private_files import OWNER_ONLY, make_private_file, narrow
from gateway.state.sqlite_batch import Outcome, Step, TransactionQueue, run_steps

T = TypeVar("T")


class SqliteWorker:
    def __init__(
        self, path: Path | str, schema: str, *, name: str, busy_timeout_s: float = 10.0, file_mode: int = OWNER_ONLY
    ) -> None:
        """`file_mode`: the file's permissions (SQLite gives its -wal and -shm files the same)."""
        self._path = str(path)
        self._file_mode = file_mode
        self._schema = schema
        self._busy_timeout_s = busy_timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        self._transactions = TransactionQueue(self._run_steps)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` atomically across processes sharing the file; its result once its transaction has committed.

        `fn` may share one BEGIN IMMEDIATE ... COMMIT with other queued calls, inside its own savepoint:
        if it raises, only its own writes are rolled back.
        """
        return await self._transactions.submit(fn)

    async def aclose(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._transactions.wait_idle()
            await loop.run_in_executor(self._executor, self._close)
        finally:
            self._executor.shutdown(wait=True)

    async def _run_steps(self, steps: list[Step]) -> list[Outcome]:
        return await self.run(lambda conn: run_steps(conn, steps))

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._open()
        return fn(self._conn)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _open(self) -> sqlite3.Connection:
        path = Path(self._path)
        make_private_file(path, self._file_mode)
        for suffix in ("-wal", "-shm", "-journal"):  # left by a version that made them readable to others
            narrow(path.with_name(path.name + suffix), self._file_mode)
        conn = sqlite3.connect(self._path, isolation_level=None, timeout=self._busy_timeout_s)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            _retry_while_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"), self._busy_timeout_s)
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(self._schema)
        except BaseException:
            conn.close()
            raise
        return conn


def _retry_while_locked(statement: Callable[[], object], timeout_s: float) -> None:
    """SQLite can refuse a journal-mode change with "database is locked" at once, without waiting
    on busy_timeout, while another process opens the same new file: try again until timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            statement()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
