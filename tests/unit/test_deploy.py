"""deploy/compose.yaml: no container engine runs here, so check what the file relies on."""

from __future__ import annotations

import re

import yaml

from gateway.config import GatewayConfig
from gateway.server import hypercorn_config

from ..deployment import ROOT, container_config, image, image_files

COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
IMAGE = image()


def _gateways() -> dict[str, dict]:
    return {n: s for n, s in COMPOSE["services"].items() if n.startswith("gateway-")}


def _config(service: dict) -> GatewayConfig:
    """What a node loads: the image's environment and configuration file, then the service's
    variables (`${VAR...}` substitutions replaced by a placeholder)."""
    env = {
        k: re.sub(r"\$\{(\w+)[^}]*\}", "secret", str(v)) for k, v in service["environment"].items()
    }
    return container_config({**IMAGE.env(), **env}, image_files(IMAGE))


def test_every_gateway_environment_is_a_valid_configuration():
    """Each node's variables load (a typo'd key or a bad value fails here, not in production)."""
    nodes = set()
    for service in _gateways().values():
        config = _config(service)
        assert config.redis.url.startswith("redis://")
        assert config.redis.state_store == "redis"
        assert config.tls.wss_bind and config.server.ws_bind
        assert not config.security.dev_auto_register
        nodes.add(config.redis.node_id)
    assert len(nodes) == len(_gateways()) >= 2, "every node needs its own redis.node_id"


def test_nodes_run_the_image_with_its_command_and_volumes():
    """The Dockerfile's init and `serve` run (so SIGTERM drains) and its volumes are named ones."""
    volumes = set(IMAGE.last("VOLUME").exec_form())
    for service in _gateways().values():
        assert service["build"] == ".." and (ROOT / "Dockerfile").is_file()
        assert "entrypoint" not in service and "command" not in service
        for mount in service["volumes"]:
            assert mount.split(":")[1] in volumes, f"{mount} is not one of the image's volumes"


def test_stop_grace_period_outlasts_the_drain():
    for service in _gateways().values():
        config = _config(service)
        grace = float(service["stop_grace_period"].removesuffix("s"))
        assert grace > config.server.drain_seconds + hypercorn_config(config).graceful_timeout


def test_nodes_share_the_ca_store_and_the_balancer_reaches_both():
    for service in _gateways().values():
        assert "certs:/app/certs" in service["volumes"]
        assert _config(service).tls.certs_dir == "/app/certs"
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for name in _gateways():
        assert f"{name}:9000" in haproxy and f"{name}:9443" in haproxy
        assert f"{name}:9100" not in haproxy, "the status listener is not for charge points"
    assert "mode tcp" in haproxy, "TLS must pass through: the gateway checks client certificates"


def test_redis_persists_every_acknowledged_write():
    command = COMPOSE["services"]["redis"]["command"]
    assert "--appendonly yes" in command and "--appendfsync always" in command
