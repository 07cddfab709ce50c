"""A real redis-server for tests: started on 127.0.0.1 and a free port, stopped at the end of the session.

Outside CI a missing redis-server skips the Redis tests with the command that
installs it; in CI (CI=true) it fails them, so a broken install is never
mistaken for a green run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gateway_process import free_port
from tests.waiting import wait_until

INSTALL_HINT = "apt-get install -y redis-server"


@dataclass(frozen=True)
class RedisServer:
    url: str
    port: int


def _require_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        message = f"redis-server is not installed ({INSTALL_HINT})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI must install it (.ci/run does)", pytrace=False)
        pytest.skip(message)
    return binary


def _wait_ready(process: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float = 10.0) -> None:
    def answers_ping() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        wait_until(answers_ping, timeout_s=timeout_s, what=f"redis-server to answer PING on port {port}")
    except AssertionError as exc:
        raise RuntimeError(f"{exc}:\n{log.read_text()[-2000:]}") from None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    workdir = tmp_path_factory.mktemp("redis")
    port = free_port()
    process = launch_redis(workdir, port)
    try:
        yield RedisServer(f"redis://127.0.0.1:{port}/0", port)
    finally:
        stop_redis(process)


def launch_redis(workdir: Path, port: int, *, persistent: bool = False) -> subprocess.Popen[bytes]:
    """A redis-server on 127.0.0.1:`port` keeping its files in `workdir`, answering PING when this returns.

    `persistent`: an append-only file written on every command, as docs/operations.md recommends, so a
    restart on the same folder comes back with every acknowledged write.
    """
    binary = _require_binary()
    log = workdir / "redis.log"
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
    command += ["--dir", str(workdir), "--logfile", str(log)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_ready(process, port, log)
    except BaseException:
        stop_redis(process)
        raise
    return process


def stop_redis(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (Redis finishes its files and exits), SIGKILL if it has not within 10 s."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def redis_prefix() -> str:
    """Each test gets its own key prefix, so tests never see each other's keys."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[object]:
    from gateway.state.redis_client import open_redis

    client = open_redis(redis_server.url)
    yield client
    await client.aclose()
