"""deploy/compose/compose.yaml: valid against the Compose Specification's JSON schema (the copy that the
check-jsonschema package ships, deploy extra: dev), and the checks that matter at run time: every service
has an image or a build, a healthcheck and a restart policy; env files have examples; depends_on waits on
healthchecks that exist; the gateways' config agrees with the services, ports and mounts.

No daemon or compose plugin runs here (docs/deploy.md).
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator

from gateway.config import Config
from tests.deploy.recipes import COMPOSE, DOCKER, ROOT, load

Service = dict[str, Any]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Service]:
    return dict(compose["services"])


def mounts(service: Service) -> dict[str, str]:
    """Container path -> host source of each bind mount or volume."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = re.split(r":(?=/)|:(?=ro$)", volume)
        found[target] = source
    return found


def mounted_config(service: Service) -> Config:
    command = service["command"]
    target = command[command.index("--config") + 1]
    source = mounts(service)[target]
    return load(COMPOSE / source)


def test_the_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    validator = Draft202012Validator(json.loads(schema_file.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert not errors


def test_every_service_has_an_image_a_healthcheck_and_a_restart_policy(services: dict[str, Service]) -> None:
    assert set(services) == {"gateway", "redis", "vllm"}
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "unless-stopped", name
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        build = service.get("build")
        if build:
            assert (COMPOSE / build["context"] / build["dockerfile"]).is_file(), f"{name}: no such Dockerfile"


def test_env_files_have_examples_and_stay_out_of_git(services: dict[str, Service]) -> None:
    for name in ("gateway", "vllm"):
        (entry,) = services[name]["env_file"]
        env_file = COMPOSE / entry["path"]
        assert Path(f"{env_file}.example").is_file(), f"{name}: {entry['path']}.example is missing"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(env_file)], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"{env_file} (secrets) is not in .gitignore"


def test_depends_on_waits_for_healthchecks_that_exist(services: dict[str, Service]) -> None:
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on a service that does not exist: {dependency}"
            assert condition["condition"] == "service_healthy"
            assert "healthcheck" in services[dependency]
    assert set(services["gateway"]["depends_on"]) == {"redis", "vllm"}


def test_the_gateway_replicas_publish_their_configured_ports_and_outlast_the_drain(
    services: dict[str, Service],
) -> None:
    gateway = services["gateway"]
    config = mounted_config(gateway)
    assert gateway["deploy"]["replicas"] >= 3
    container_ports = {int(mapping.rsplit(":", 1)[1]) for mapping in gateway["ports"]}
    assert container_ports == {config.server.port, config.server.http_port}
    for mapping in gateway["ports"]:  # a host port range wide enough for every replica
        low, _, high = mapping.rsplit(":", 1)[0].partition("-")
        assert int(high or low) - int(low) + 1 >= gateway["deploy"]["replicas"], mapping
    grace = gateway["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > config.server.drain_timeout_s
    assert f"127.0.0.1:{config.server.http_port}/healthz" in " ".join(gateway["healthcheck"]["test"])
    assert gateway["read_only"] is True


def test_the_gateways_find_redis_and_vllm_where_compose_puts_them(services: dict[str, Service]) -> None:
    config = mounted_config(services["gateway"])
    vllm_config = load(DOCKER / "vllm.toml")  # baked into the vLLM image, which compose runs as is
    assert "command" not in services["vllm"]
    state = urlsplit(config.state.url)
    assert (config.state.backend, state.hostname, state.port) == ("redis", "redis", 6379)
    vllm = urlsplit(config.local.vllm.base_url)
    assert (vllm.hostname, vllm.port) == ("vllm", urlsplit(vllm_config.local.vllm.base_url).port)
    assert config.local.vllm.served_model_name == vllm_config.local.vllm.served_model_name
    assert config.local.vllm.api_key_env == vllm_config.local.vllm.api_key_env
    for name, dir_ in (("gateway", config.adapters.dir), ("vllm", vllm_config.adapters.dir)):
        assert dir_ in mounts(services[name]), f"{name} does not mount the adapters at {dir_}"
    assert "/models/base" in mounts(services["vllm"]) and vllm_config.local.vllm.model_dir == "/models/base"


def test_vllm_reserves_a_gpu(services: dict[str, Service]) -> None:
    (device,) = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert (device["driver"], device["capabilities"]) == ("nvidia", ["gpu"])
