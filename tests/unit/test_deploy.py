"""deploy/compose.yaml: no container engine runs here, so check what the file relies on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from gateway.config import load_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())


def _gateways() -> dict[str, dict]:
    return {n: s for n, s in COMPOSE["services"].items() if n.startswith("gateway-")}


def test_every_gateway_environment_is_a_valid_configuration():
    """Each node's variables load (a typo'd key or a bad value fails here, not in production)."""
    nodes = set()
    for service in _gateways().values():
        env = {
            k: re.sub(r"\$\{(\w+)[^}]*\}", "secret", str(v))
            for k, v in service["environment"].items()
        }
        config = load_config(None, env)
        assert config.redis.url.startswith("redis://")
        assert config.redis.state_store == "redis"
        assert config.tls.wss_bind and config.server.ws_bind
        nodes.add(config.redis.node_id)
    assert len(nodes) == len(_gateways()) >= 2, "every node needs its own redis.node_id"


def test_nodes_share_the_ca_store_and_the_balancer_reaches_both():
    for service in _gateways().values():
        assert "certs:/app/certs" in service["volumes"]
    haproxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    for name in _gateways():
        assert f"{name}:9000" in haproxy and f"{name}:9443" in haproxy
    assert "mode tcp" in haproxy, "TLS must pass through: the gateway checks client certificates"


def test_redis_persists_every_acknowledged_write():
    command = COMPOSE["services"]["redis"]["command"]
    assert "--appendonly yes" in command and "--appendfsync always" in command
