"""Every gateway config a recipe ships loads with gateway.config.load_config (unknown keys are errors),
and none serves plaintext off loopback without saying so on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.app.transport import is_loopback
from tests.deploy.recipes import DEPLOY, configs, load


def test_the_recipes_ship_their_configs() -> None:
    names = {str(p.relative_to(DEPLOY)) for p in configs()}
    assert names == {
        "systemd/gateway.toml",
        "docker/gateway.toml",
        "docker/vllm.toml",
        "compose/gateway.toml",
        "k8s/gateway.toml",
        "k8s/vllm.toml",
    }


@pytest.mark.parametrize("path", configs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_the_config_loads(path: Path) -> None:
    config = load(path)
    assert Path(config.cache_dir).is_absolute() and Path(config.state_dir).is_absolute()
    assert config.adapters.dir.startswith("/")


@pytest.mark.parametrize("path", configs(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_plaintext_off_loopback_is_a_stated_choice(path: Path) -> None:
    server = load(path).server
    if all(is_loopback(host) for host in (server.host, server.http_host)) or server.tls.cert_file:
        return
    assert server.allow_insecure, f"{path}: off loopback without TLS, the gateway refuses to start"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("allow_insecure"))
    reason = " ".join(lines[max(0, at - 3) : at])
    assert "TLS" in reason, f"{path}: say above allow_insecure where TLS terminates"


@pytest.mark.parametrize("name", ["compose/gateway.toml", "k8s/gateway.toml"])
def test_replicas_keep_every_piece_of_state_in_redis(name: str) -> None:
    config = load(DEPLOY / name)
    assert config.state.backend == "redis"
    assert config.local.backend == "vllm"
