"""deploy/kubernetes: no cluster here, so the manifests are read the way Kubernetes reads them.

The container's configuration (the image's environment and file, the Deployment's variables, the
ConfigMap where it is mounted) goes through the gateway's own loader; the CA store Secrets are made
by ca-store-secrets.sh from a store made with the project's CA code, laid out the way the kubelet
writes Secret volumes, and loaded and hot-reloaded by the gateway's trust code.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, GatewayConfig
from gateway.server import hypercorn_config
from gateway.trust import TrustState
from security.devcerts import ensure_dev_certificates

from ..deployment import ROOT, container_config, image, image_files, port_of

FOLDER = ROOT / "deploy" / "kubernetes"
MANIFESTS = {
    path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for path in sorted(FOLDER.glob("*.yaml"))
}
RESOURCES = [doc for docs in MANIFESTS.values() for doc in docs if doc["kind"] != "Kustomization"]
README = (FOLDER / "README.md").read_text()
SCRIPT = FOLDER / "ca-store-secrets.sh"
POD_NAME = "ocpp-gateway-7d9c8b6f5-x2x9q"
# Secrets the README has the operator create, with a value of the documented shape.
EXAMPLE_SECRETS = {
    ("ocpp-gateway-redis", "url"): "redis://gateway:secret@redis.example.internal:6379/0",
}
CA_FOLDERS = ("trust", "intermediate", "crl", "server")


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [r for r in RESOURCES if r["kind"] == kind and name in (None, r["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


DEPLOYMENT = _one("Deployment")
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
VOLUMES = {v["name"]: v for v in POD["volumes"]}
MOUNTS = {m["mountPath"]: m for m in CONTAINER["volumeMounts"]}
PORTS = {p["name"]: p for p in CONTAINER["ports"]}


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's variables as the kubelet sets them (references resolved)."""
    assert "envFrom" not in container, "list variables one by one, so that they are checked here"
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name"
            env[item["name"]] = POD_NAME
        else:
            ref = source["secretKeyRef"]
            key = (ref["name"], ref["key"])
            assert key in EXAMPLE_SECRETS, f"document Secret {key} in README.md and add it here"
            env[item["name"]] = EXAMPLE_SECRETS[key]
    return env


def _files() -> dict[str, str]:
    """Container path -> text: the image's files, with the ConfigMap mounts over them."""
    files = image_files(image())
    for path, mount in MOUNTS.items():
        volume = VOLUMES[mount["name"]]
        if "configMap" not in volume:
            continue
        assert "subPath" not in mount, "subPath mounts never see ConfigMap updates"
        assert "items" not in volume["configMap"]
        files = {p: t for p, t in files.items() if not p.startswith(path.rstrip("/") + "/")}
        for key, text in _one("ConfigMap", volume["configMap"]["name"])["data"].items():
            files[f"{path}/{key}"] = text
    return files


def _config(extra_env: dict[str, str] | None = None) -> GatewayConfig:
    env = {**image().env(), **_env(CONTAINER), **(extra_env or {})}
    return container_config(env, _files())


def _port(ref: int | str) -> int:
    return PORTS[ref]["containerPort"] if isinstance(ref, str) else ref


# -- the configuration ---------------------------------------------------------------------------


def test_kustomization_applies_every_manifest_into_one_namespace():
    kustomization = MANIFESTS["kustomization.yaml"][0]
    assert set(kustomization["resources"]) == set(MANIFESTS) - {"kustomization.yaml"}
    namespace = _one("Namespace")["metadata"]["name"]
    assert kustomization["namespace"] == namespace
    for resource in RESOURCES:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace


def test_the_gateway_environment_and_config_map_are_a_valid_configuration():
    """Every OCPP_GATEWAY_* variable and key is accepted (a typo fails here, not in the pod)."""
    config = _config()
    assert config.redis.url == EXAMPLE_SECRETS[("ocpp-gateway-redis", "url")]
    assert config.redis.state_store == "redis", "records and tokens shared by every pod"
    assert not config.tls.dev_certificates, "the CA store is read-only: never generate one"
    assert not config.security.dev_auto_register


def test_each_pod_is_its_own_redis_node_named_after_the_pod():
    assert DEPLOYMENT["spec"]["replicas"] == 2
    assert _config().redis.node_id == POD_NAME


def test_redis_url_comes_from_the_secret_the_readme_creates():
    (item,) = [e for e in CONTAINER["env"] if e["name"] == "OCPP_GATEWAY_REDIS_URL"]
    ref = item["valueFrom"]["secretKeyRef"]
    assert f"create secret generic {ref['name']}" in README
    assert f"--from-literal={ref['key']}=" in README


def _service_link_variables(service: dict[str, Any]) -> dict[str, str]:
    """What the kubelet injects for a Service when service links are on (docker-link style)."""
    prefix = service["metadata"]["name"].upper().replace("-", "_")
    ip, ports = "10.96.0.10", service["spec"]["ports"]
    env = {
        f"{prefix}_SERVICE_HOST": ip,
        f"{prefix}_SERVICE_PORT": str(ports[0]["port"]),
        f"{prefix}_PORT": f"tcp://{ip}:{ports[0]['port']}",
    }
    for port in ports:
        name = f"{prefix}_PORT_{port['port']}_{port.get('protocol', 'TCP')}"
        env.update({name: f"tcp://{ip}:{port['port']}", f"{name}_ADDR": ip})
        env[f"{prefix}_SERVICE_PORT_{port['name'].upper()}"] = str(port["port"])
    return env


def test_service_links_are_off_because_they_would_inject_unknown_gateway_variables():
    """A Service named ocpp-gateway makes OCPP_GATEWAY_PORT etc.; the loader refuses those."""
    services = [r for r in RESOURCES if r["kind"] == "Service"]
    links: dict[str, str] = {}
    for service in services:
        links.update(_service_link_variables(service))
    assert any(name.startswith("OCPP_GATEWAY_") for name in links)
    with pytest.raises(ConfigError, match="unknown key"):
        _config(links)
    assert POD["enableServiceLinks"] is False


def test_config_map_is_mounted_where_the_image_reads_its_configuration():
    path = _env(CONTAINER).get("OCPP_GATEWAY_CONFIG") or image().env()["OCPP_GATEWAY_CONFIG"]
    mount = MOUNTS[str(PurePosixPath(path).parent)]
    assert mount["readOnly"] is True
    assert "configMap" in VOLUMES[mount["name"]]


# -- probes, ports, shutdown ---------------------------------------------------------------------


def test_probes_ask_healthz_and_readyz_on_the_status_listener():
    status = _port(CONTAINER["livenessProbe"]["httpGet"]["port"])
    assert status == port_of(_config().status.bind) == 9100
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert CONTAINER["startupProbe"]["httpGet"] == CONTAINER["livenessProbe"]["httpGet"]
    readiness = CONTAINER["readinessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz" and _port(readiness["port"]) == status
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(status)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_container_ports_are_the_listeners_and_the_image_exposes_them():
    config = _config()
    assert PORTS["ws"]["containerPort"] == port_of(config.server.ws_bind[0])
    assert PORTS["wss"]["containerPort"] == port_of(config.tls.wss_bind[0])
    assert PORTS["status"]["containerPort"] == port_of(config.status.bind)
    exposed = {int(p) for p in image().last("EXPOSE").args.split()}
    assert {p["containerPort"] for p in PORTS.values()} == exposed


def test_termination_grace_outlasts_the_pre_stop_pause_and_the_drain():
    config = _config()
    pause = float(CONTAINER["lifecycle"]["preStop"]["exec"]["command"][-1])
    needed = pause + config.server.drain_seconds + hypercorn_config(config).graceful_timeout
    assert POD["terminationGracePeriodSeconds"] > needed


def test_services_select_the_pods_and_reach_their_ports():
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert DEPLOYMENT["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in (r for r in RESOURCES if r["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in PORTS, f"{port} names no container port"
            assert port.get("protocol", "TCP") == "TCP"


def test_charge_points_reach_ws_and_wss_through_a_tcp_load_balancer_keeping_their_address():
    service = _one("Service", "ocpp-gateway")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"ws", "wss"}
    for port in service["spec"]["ports"]:
        assert port["port"] == _port(port["targetPort"])
    status = _one("Service", "ocpp-gateway-status")
    assert status["spec"]["type"] == "ClusterIP"
    assert [p["targetPort"] for p in status["spec"]["ports"]] == ["status"]


def test_rolling_updates_and_evictions_keep_capacity():
    strategy = DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0 and strategy["maxSurge"] >= 1
    pdb = _one("PodDisruptionBudget")
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] < DEPLOYMENT["spec"]["replicas"]


# -- security context, volumes -----------------------------------------------------------------


def test_pod_runs_as_the_image_user_non_root_on_a_read_only_root():
    security = POD["securityContext"]
    uid, _, gid = image().last("USER").args.partition(":")
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (int(uid), int(gid))
    assert security["fsGroup"] == int(gid), "the Secret files are group-readable (0440)"
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    container = CONTAINER["securityContext"]
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"]["drop"] == ["ALL"]
    assert POD["automountServiceAccountToken"] is False
    assert "memory" in CONTAINER["resources"]["limits"]
    assert {"cpu", "memory"} <= CONTAINER["resources"]["requests"].keys()


def test_what_the_gateway_writes_is_on_an_empty_dir():
    config = _config()
    for path in ("/tmp", str(PurePosixPath(config.security.audit_log).parent)):
        mount = MOUNTS[path]
        assert "emptyDir" in VOLUMES[mount["name"]] and not mount.get("readOnly")


def test_ca_store_folders_are_read_only_secret_directory_mounts():
    """Directory mounts (never subPath) so that Secret updates reach the files, which the gateway
    hot-reloads; the CA's own keys (ca/) stay off the cluster."""
    certs_dir = PurePosixPath(_config().tls.certs_dir)
    for folder in CA_FOLDERS:
        mount = MOUNTS[str(certs_dir / folder)]
        assert mount["readOnly"] is True and "subPath" not in mount
        secret = VOLUMES[mount["name"]]["secret"]
        assert secret["secretName"] == f"ocpp-gateway-ca-{folder}"
        assert "items" not in secret, "every file of the Secret, whatever the anchors are named"
    assert str(certs_dir / "ca") not in MOUNTS


# -- the CA store Secrets ------------------------------------------------------------------------


def _kubelet_write(directory: Path, files: dict[str, bytes]) -> None:
    """Write a Secret volume the way the kubelet does (AtomicWriter): the files in a timestamped
    folder, `..data` switched to it atomically, one symbolic link per key."""
    directory.mkdir(exist_ok=True)
    stamped = directory / f"..{time.time_ns()}"
    stamped.mkdir()
    for name, data in files.items():
        (stamped / name).write_bytes(data)
    previous = (directory / "..data").resolve() if (directory / "..data").exists() else None
    (directory / "..data_tmp").symlink_to(stamped.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    for name in files:
        if not (directory / name).is_symlink():
            (directory / name).symlink_to(f"..data/{name}")
    for link in directory.iterdir():
        if not link.name.startswith("..") and link.name not in files:
            link.unlink()
    if previous is not None:
        shutil.rmtree(previous)


def _files_in(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def _secrets_of(certs_dir: Path) -> dict[str, dict[str, bytes]]:
    """Secret name -> files, as ca-store-secrets.sh prints them."""
    result = subprocess.run(
        [str(SCRIPT), str(certs_dir)], capture_output=True, text=True, check=True, timeout=30
    )
    secrets = {}
    for doc in yaml.safe_load_all(result.stdout):
        if doc:
            assert doc["kind"] == "Secret" and doc["metadata"]["namespace"] == "ocpp-gateway"
            data = doc.get("data") or {}
            secrets[doc["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in data.items()}
    return secrets


needs_kubectl = pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")


@needs_kubectl
def test_kustomize_renders_every_resource():
    result = subprocess.run(
        ["kubectl", "kustomize", str(FOLDER)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert kinds == sorted((r["kind"], r["metadata"]["name"]) for r in RESOURCES)


@needs_kubectl
def test_secrets_script_packs_every_folder_the_gateway_reads_and_no_ca_key(tmp_path):
    store = tmp_path / "certs"
    ensure_dev_certificates(store, "localhost")
    secrets = _secrets_of(store)
    mounted = {VOLUMES[MOUNTS[p]["name"]]["secret"]["secretName"] for p in MOUNTS if "/certs/" in p}
    assert set(secrets) == mounted
    for folder in CA_FOLDERS:
        assert secrets[f"ocpp-gateway-ca-{folder}"] == _files_in(store / folder)
    packed = b"".join(data for files in secrets.values() for data in files.values())
    for key in (store / "ca").glob("*.key"):
        assert key.read_bytes() not in packed


@needs_kubectl
def test_secrets_script_refuses_a_folder_that_is_not_a_ca_store(tmp_path):
    result = subprocess.run([str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "ca init" in result.stderr
    (tmp_path / "trust").mkdir()
    result = subprocess.run([str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "ca issue-server" in result.stderr


def test_gateway_loads_the_mounted_secrets_and_hot_reloads_their_updates(tmp_path):
    """Same file names, new contents (a re-issued server certificate, a new anchor): the kubelet
    only switches `..data`, and the gateway's periodic check must still see it."""
    first, second = tmp_path / "first", tmp_path / "second"
    ensure_dev_certificates(first, "localhost")
    ensure_dev_certificates(second, "gateway.example.com")
    mounted = tmp_path / "certs"
    mounted.mkdir()
    for folder in CA_FOLDERS:
        _kubelet_write(
            mounted / folder, {p.name: p.read_bytes() for p in (first / folder).iterdir()}
        )
    trust = TrustState(mounted, with_tls=True)
    assert len(trust.store.anchors) == 1 and trust.context is not None
    assert trust.reload_if_changed() is None

    _kubelet_write(mounted / "server", _files_in(second / "server"))
    reloaded = trust.reload_if_changed()
    assert reloaded is not None and reloaded.context_changed

    anchors = {"dev-root.pem": (first / "trust" / "dev-root.pem").read_bytes()}
    anchors["second-root.pem"] = (second / "trust" / "dev-root.pem").read_bytes()
    _kubelet_write(mounted / "trust", anchors)
    reloaded = trust.reload_if_changed()
    assert reloaded is not None and reloaded.store_changed
    assert len(trust.store.anchors) == 2
