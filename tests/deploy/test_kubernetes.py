"""deploy/k8s: every manifest is valid against the Kubernetes schemas (kubernetes-validate bundles them,
so this runs offline and without a cluster), and the pieces fit: references resolve, the gateways'
probes use the gRPC health service on the configured port, the drain fits the grace period, the
config finds Redis and vLLM through their Services.

The kustomization is rendered here as kustomize would (resources + configMapGenerator); where kubectl is
installed its own `kubectl kustomize` output is validated too.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.config import Config, load_config
from gateway.remote.providers.registry import key_envs
from tests.deploy.recipes import K8S, yaml_documents

Object = dict[str, Any]
OLDEST = "1.30.0"  # lifecycle.preStop.sleep needs 1.30


def kustomization() -> Object:
    document = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(document, dict)
    return document


def rendered() -> list[Object]:
    """The resources, plus one ConfigMap per configMapGenerator entry (under its base name)."""
    spec = kustomization()
    objects = [doc for name in spec["resources"] for doc in yaml_documents(K8S / name)]
    for generator in spec.get("configMapGenerator", []):
        data = {Path(file).name: (K8S / file).read_text() for file in generator["files"]}
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    return objects


@pytest.fixture(scope="module")
def objects() -> list[Object]:
    return rendered()


def named(objects: list[Object], kind: str, name: str) -> Object:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def workloads(objects: list[Object]) -> Iterator[Object]:
    return (o for o in objects if o["kind"] in {"Deployment", "StatefulSet"})


def containers(workload: Object) -> list[Object]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def config_of(objects: list[Object], workload: Object) -> Config:
    """The config a workload's container reads: --config, inside the ConfigMap volume mounted there."""
    (container,) = containers(workload)
    path = Path(container["args"][container["args"].index("--config") + 1])
    mount = next(m for m in container["volumeMounts"] if Path(m["mountPath"]) == path.parent)
    volume = next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
    text = named(objects, "ConfigMap", volume["configMap"]["name"])["data"][path.name]
    with tempfile.TemporaryDirectory() as folder:  # load_config reads a file, as the container does
        scratch = Path(folder) / path.name
        scratch.write_text(text)
        return load_config(scratch, env={})


def mount_paths(workload: Object) -> dict[str, Object]:
    return {m["mountPath"]: m for c in containers(workload) for m in c.get("volumeMounts", [])}


def seconds_of_prestop(container: Object) -> int:
    return int(container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0))


@pytest.mark.parametrize("version", [OLDEST, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_against_the_kubernetes_schemas(objects: list[Object], version: str) -> None:
    example_secret = list(yaml_documents(K8S / "secret.example.yaml"))
    for obj in objects + example_secret:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} on Kubernetes {version}: {exc.message}")


def test_kubectl_kustomize_renders_the_same_objects_and_they_are_valid(objects: list[Object]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the kustomization was rendered by the test itself")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=True)
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    for obj in built:
        kubernetes_validate.validate(obj, OLDEST, strict=True)
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "trading-gateway"

    def identity(obj: Object, *, hashed: bool) -> tuple[str, str]:
        name = str(obj["metadata"]["name"])
        return obj["kind"], name.rsplit("-", 1)[0] if hashed and obj["kind"] == "ConfigMap" else name

    # kustomize appends a hash of the content to the generated ConfigMaps' names
    assert sorted(identity(o, hashed=True) for o in built) == sorted(identity(o, hashed=False) for o in objects)


def test_references_resolve(objects: list[Object]) -> None:
    secret = next(yaml_documents(K8S / "secret.example.yaml"))
    claims = {o["metadata"]["name"] for o in objects if o["kind"] == "PersistentVolumeClaim"}
    config_maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert source["secretRef"]["name"] == secret["metadata"]["name"]
            for variable in container.get("env", []):
                ref = variable["valueFrom"]["secretKeyRef"]
                assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
            names = {m["name"] for m in container.get("volumeMounts", [])}
            assert names <= {v["name"] for v in pod.get("volumes", [])} | {
                t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])
            }


def test_services_and_policies_select_pods_that_exist_on_ports_they_open(objects: list[Object]) -> None:
    pods = {w["metadata"]["name"]: w for w in workloads(objects)}

    def selected(selector: dict[str, str]) -> Object:
        matches = [w for w in pods.values() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"{selector} selects {len(matches)} workloads"
        return matches[0]

    for service in (o for o in objects if o["kind"] == "Service"):
        workload = selected(service["spec"]["selector"])
        ports = {p["name"]: p["containerPort"] for c in containers(workload) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{service['metadata']['name']}: no container port {port['targetPort']}"
            assert ports[port["targetPort"]] == port["port"]
    for policy in (o for o in objects if o["kind"] == "NetworkPolicy"):
        selected(policy["spec"]["podSelector"]["matchLabels"])
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                selected(peer["podSelector"]["matchLabels"])
    pdb = named(objects, "PodDisruptionBudget", "gateway")
    assert selected(pdb["spec"]["selector"]["matchLabels"]) is pods["gateway"]
    assert pdb["spec"]["minAvailable"] < pods["gateway"]["spec"]["replicas"], "a drain could never evict one"


def test_every_container_asks_for_resources_and_runs_locked_down(objects: list[Object]) -> None:
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys(), where
            assert "memory" in container["resources"]["limits"], where
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert container.get("readinessProbe") and container.get("livenessProbe"), where


def test_the_gateways_probe_grpc_health_on_their_port_and_drain_within_the_grace_period(
    objects: list[Object],
) -> None:
    gateway = named(objects, "Deployment", "gateway")
    config = config_of(objects, gateway)
    (container,) = containers(gateway)
    assert gateway["spec"]["replicas"] >= 2
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"] == {"port": config.server.port}, probe  # service "": the whole server
    assert {p["containerPort"] for p in container["ports"]} == {config.server.port, config.server.http_port}
    grace = gateway["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > seconds_of_prestop(container) + config.server.drain_timeout_s
    assert gateway["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert config.server.allow_insecure or config.server.tls.cert_file  # kubelet grpc probes speak plaintext
    secret = next(yaml_documents(K8S / "secret.example.yaml"))
    for provider, settings in config.providers.items():
        assert set(key_envs(provider, settings)) & secret["stringData"].keys(), f"the Secret has no key for {provider}"
    assert config.local.vllm.api_key_env in secret["stringData"]


def test_the_gateways_share_redis_and_reach_vllm_through_their_services(objects: list[Object]) -> None:
    gateway, vllm = named(objects, "Deployment", "gateway"), named(objects, "Deployment", "vllm")
    config, vllm_config = config_of(objects, gateway), config_of(objects, vllm)
    state = urlsplit(config.state.url)
    assert config.state.backend == "redis"
    redis_service = named(objects, "Service", str(state.hostname))
    assert state.port == redis_service["spec"]["ports"][0]["port"]
    assert "redis" in {w["metadata"]["name"] for w in workloads(objects)}
    target = urlsplit(config.local.vllm.base_url)
    assert target.port == named(objects, "Service", str(target.hostname))["spec"]["ports"][0]["port"]
    assert target.port == urlsplit(vllm_config.local.vllm.base_url).port
    assert urlsplit(vllm_config.local.vllm.base_url).hostname == "0.0.0.0"
    assert config.local.vllm.served_model_name == vllm_config.local.vllm.served_model_name
    assert config.adapters.dir == vllm_config.adapters.dir
    for workload in (gateway, vllm):
        assert mount_paths(workload)[config.adapters.dir]["readOnly"] is True
    model_mount = next(p for p in mount_paths(vllm) if Path(vllm_config.local.vllm.model_dir).is_relative_to(p))
    assert mount_paths(vllm)[model_mount]["readOnly"] is True


def test_vllm_requests_a_gpu(objects: list[Object]) -> None:
    (container,) = containers(named(objects, "Deployment", "vllm"))
    assert container["resources"]["requests"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
