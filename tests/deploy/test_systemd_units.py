"""deploy/systemd: `systemd-analyze verify` and `security` pass on every unit, and the units agree with the
config they serve (paths, drain time, keys, ports).

verify needs every ExecStart binary to exist, so it runs with --root on a scratch tree: the host's unit
directory (for the targets the units name), the recipe's units, and an empty executable at each
ExecStart path. Nothing is installed or started.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from gateway.app.local_http import vllm_launch
from gateway.remote.providers.registry import key_envs
from tests.deploy.recipes import SYSTEMD, Unit, env_names, exec_start, load, one, read_unit, require_tool, units
from tests.gateway_process import free_port
from tests.redis_server import INSTALL_HINT

GATEWAY, VLLM, REDIS = "trading-gateway.service", "trading-gateway-vllm.service", "trading-gateway-redis.service"
CONFIG = Path("/etc/trading-gateway/gateway.toml")  # where the units read it
MAX_EXPOSURE = {GATEWAY: 2.0, REDIS: 2.0, VLLM: 4.0}  # vLLM keeps the GPU's devices and JIT compilation
HOST_UNITS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    return require_tool("systemd-analyze", "apt-get install -y systemd")


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("systemd-root")
    host_units = next((d for d in HOST_UNITS if (d / "multi-user.target").is_file()), None)
    assert host_units is not None, "no systemd unit directory on this machine"
    shutil.copytree(host_units, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for path in units():
        shutil.copy(path, root / "etc/systemd/system" / path.name)
        binary = root / exec_start(read_unit(path))[0].lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return root


def unit(name: str) -> Unit:
    return read_unit(SYSTEMD / name)


def seconds(value: str) -> float:
    assert value.endswith("s") and value[:-1].isdigit(), f"write times as '<n>s', got {value!r}"
    return float(value[:-1])


def test_the_recipe_ships_the_three_units() -> None:
    assert [p.name for p in units()] == sorted([GATEWAY, VLLM, REDIS])


@pytest.mark.parametrize("name", [GATEWAY, VLLM, REDIS])
def test_systemd_analyze_verify_passes_without_a_warning(name: str, systemd_analyze: str, scratch_root: Path) -> None:
    done = subprocess.run(
        [systemd_analyze, "verify", "--man=no", f"--root={scratch_root}", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


@pytest.mark.parametrize("name", [GATEWAY, VLLM, REDIS])
def test_systemd_analyze_security_rates_the_unit_hardened(name: str, systemd_analyze: str, scratch_root: Path) -> None:
    done = subprocess.run(
        [systemd_analyze, "security", "--offline=yes", f"--root={scratch_root}", name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    score = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d+)", done.stdout)
    assert score, done.stdout[-2000:] + done.stderr
    assert float(score.group(1)) <= MAX_EXPOSURE[name], done.stdout  # 0 = locked down ... 10 = fully exposed


@pytest.mark.parametrize("name", [GATEWAY, VLLM, REDIS])
def test_each_unit_runs_as_its_own_user_restarts_and_logs_to_the_journal(name: str) -> None:
    service = unit(name)
    user = one(service, "Service", "User")
    sysusers = (SYSTEMD / "trading-gateway.sysusers.conf").read_text().split()
    assert user != "root" and user in sysusers, f"{user} is not created by trading-gateway.sysusers.conf"
    assert one(service, "Service", "Restart") == "on-failure"
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes"}.items():
        assert one(service, "Service", key) == value
    assert one(service, "Service", "CapabilityBoundingSet") == ""
    assert (one(service, "Service", "StandardOutput"), one(service, "Service", "StandardError")) == ("journal",) * 2
    assert "ReadWritePaths" not in service["Service"], "the writable paths are the State/CacheDirectory ones only"


def test_the_gateway_unit_writes_only_state_dir_and_cache_dir_and_outlasts_the_drain() -> None:
    service = unit(GATEWAY)
    config = load(SYSTEMD / "gateway.toml")
    assert exec_start(service)[1:] == ["-m", "gateway", "serve", "--config", str(CONFIG)]
    assert Path("/var/lib") / one(service, "Service", "StateDirectory") == Path(config.state_dir)
    assert Path("/var/cache") / one(service, "Service", "CacheDirectory") == Path(config.cache_dir)
    assert seconds(one(service, "Service", "TimeoutStopSec")) > config.server.drain_timeout_s
    assert one(service, "Service", "KillSignal") == "SIGTERM"  # what starts the drain (gateway/app/server.py)


def test_the_gateway_environment_file_holds_every_key_the_config_reads() -> None:
    config = load(SYSTEMD / "gateway.toml")
    assert one(unit(GATEWAY), "Service", "EnvironmentFile") == "/etc/trading-gateway/gateway.env"
    names = env_names(SYSTEMD / "gateway.env.example")
    for provider, settings in config.providers.items():
        assert set(key_envs(provider, settings)) & names, f"gateway.env.example has no key for {provider}"
    assert config.local.vllm.api_key_env in names


def test_the_box_runs_offline_with_tls_off_loopback() -> None:
    config = load(SYSTEMD / "gateway.toml")
    assert config.offline
    assert config.server.tls.cert_file and config.server.tls.key_file
    assert not config.server.allow_insecure


def test_the_vllm_unit_starts_vllm_as_make_serve_vllm_does_with_only_its_own_key(tmp_path: Path) -> None:
    service = unit(VLLM)
    command = exec_start(service)
    assert command[0] == exec_start(unit(GATEWAY))[0], "the gateway's interpreter runs scripts/serve_vllm.py"
    assert Path(command[1]).parts[-2:] == ("scripts", "serve_vllm.py")
    assert command[2:] == ["--config", str(CONFIG)]
    assert one(service, "Service", "EnvironmentFile") == "/etc/trading-gateway/vllm.env"
    assert env_names(SYSTEMD / "vllm.env.example") == {"VLLM_API_KEY"}
    assert seconds(one(service, "Service", "TimeoutStartSec")) >= 600, "a large model takes minutes to load"
    config = load(SYSTEMD / "gateway.toml")
    launch = vllm_launch(config, {"VLLM_API_KEY": "k"})
    assert launch.python == config.local.vllm.python != ""
    assert (launch.host, launch.port) == ("127.0.0.1", 8000), "vLLM listens on loopback only"
    assert (launch.model_dir, launch.api_key) == (config.local.vllm.model_dir, "k")


def test_redis_listens_where_the_gateway_looks_and_keeps_its_data_in_its_state_directory() -> None:
    service = unit(REDIS)
    command = exec_start(service)
    assert command[0] == "/usr/bin/redis-server"
    settings = {}
    for line in (SYSTEMD / "redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings[key] = value.strip()
    assert command[1:] == ["/etc/trading-gateway/redis.conf"]
    url = urlsplit(load(SYSTEMD / "gateway.toml").state.url)
    assert (url.hostname, str(url.port)) == ("127.0.0.1", settings["port"])
    assert settings["bind"].split()[0] == "127.0.0.1"
    assert settings["dir"] == f"/var/lib/{one(service, 'Service', 'StateDirectory')}"
    assert (settings["appendonly"], settings["maxmemory-policy"]) == ("yes", "noeviction")
    assert (settings["supervised"], one(service, "Service", "Type")) == ("systemd", "notify")


def test_redis_starts_on_the_recipe_config_and_tells_systemd_when_it_is_ready() -> None:
    """A real redis-server on redis.conf (its dir and port moved to scratch ones), with a NOTIFY_SOCKET as
    systemd gives a Type=notify service: READY=1 arrives, and the settings the gateway relies on hold."""
    binary = require_tool("redis-server", INSTALL_HINT)
    with tempfile.TemporaryDirectory(prefix="redis-") as folder:  # short: a socket path has ~100 characters
        conf = Path(folder) / "redis.conf"
        conf.write_text(re.sub(r"^dir .*$", f"dir {folder}", (SYSTEMD / "redis.conf").read_text(), flags=re.M))
        port = free_port()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(f"{folder}/notify")
            notify.settimeout(20)
            process = subprocess.Popen(
                [binary, str(conf), "--port", str(port)],
                env={"NOTIFY_SOCKET": f"{folder}/notify", "PATH": "/usr/bin:/bin"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            try:
                messages = b""
                while b"READY=1" not in messages:  # each recv waits for the next message, up to the timeout
                    messages += notify.recv(4096) + b"\n"
                client = redis.Redis(port=port, socket_timeout=5)
                settings = {key: client.config_get(key)[key] for key in ("appendonly", "maxmemory-policy", "bind")}
                client.close()
            finally:
                process.terminate()
                process.wait(30)
    assert settings == {"appendonly": "yes", "maxmemory-policy": "noeviction", "bind": "127.0.0.1 -::1"}
