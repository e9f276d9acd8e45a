"""The Dockerfile, read the way Docker reads it: no container engine runs here.

What the image promises (non-root, ports, volumes, health check, signals, a replaceable command) is
checked against the gateway's real configuration loader and packaging; the image's command line
runs as a real process in tests/integration/test_container_command.py.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import http.server
import importlib.util
import threading
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path, PurePosixPath

import pytest

from gateway.config import ENV_CONFIG_FILE, ConfigError, GatewayConfig, load_config
from gateway.server import hypercorn_config

from ..deployment import (
    DOCKERFILE,
    IMAGE_CONFIG,
    ROOT,
    container_config,
    image,
    image_files,
    parse_dockerfile,
    port_of,
)

STAGES = parse_dockerfile(DOCKERFILE.read_text())
IMAGE = image()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
WS, WSS, STATUS = 9000, 9443, 9100


def _config() -> GatewayConfig:
    return container_config(IMAGE.env(), image_files())


def _instruction(keyword: str):
    found = IMAGE.last(keyword)
    assert found is not None, f"the image has no {keyword}"
    return found


def _healthcheck_command() -> list[str]:
    healthcheck = _instruction("HEALTHCHECK")
    kind, _, command = healthcheck.args.partition(" ")
    assert kind == "CMD", "HEALTHCHECK CMD [...] (exec form)"
    return dataclasses.replace(healthcheck, args=command).exec_form()


def _load_healthcheck():
    path = IMAGE.copied_files()["/usr/local/bin/" + _healthcheck_command()[0]]
    spec = importlib.util.spec_from_file_location("healthcheck", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- user, ports, volumes ----------------------------------------------------------------------


def test_image_runs_as_a_numeric_non_root_user():
    """Numeric, so that Kubernetes' runAsNonRoot can verify it without looking into /etc/passwd."""
    user, _, group = _instruction("USER").args.partition(":")
    assert user.isdigit() and int(user) != 0, "USER must be a numeric uid other than 0"
    assert group.isdigit() and int(group) != 0
    runs = " ".join(i.args for i in IMAGE.all("RUN"))
    assert f"--uid {user}" in runs and f"--gid {group}" in runs, "the user exists in the image"


def test_image_exposes_the_ws_wss_and_status_ports_its_configuration_listens_on():
    exposed = {int(port.partition("/")[0]) for port in _instruction("EXPOSE").args.split()}
    assert exposed == {WS, WSS, STATUS}
    config = _config()
    assert [port_of(b) for b in config.server.ws_bind] == [WS]
    assert [port_of(b) for b in config.tls.wss_bind] == [WSS]
    for bind in [*config.server.ws_bind, *config.tls.wss_bind]:
        assert bind.startswith("0.0.0.0:"), "in a container, listen on every interface"


def test_status_listener_is_on_the_exposed_status_port():
    """/healthz, /readyz and /metrics on their own port, not on the charge point listeners."""
    bind = _config().status.bind
    assert bind.startswith("0.0.0.0:") and port_of(bind) == STATUS


def test_everything_the_gateway_writes_is_on_a_volume_owned_by_its_user():
    volumes = set(_instruction("VOLUME").exec_form())
    assert volumes == {"/app/certs", "/app/data", "/etc/ocpp-gateway"}
    config = _config()
    written = [
        PurePosixPath(config.tls.certs_dir),
        PurePosixPath(config.security.records_file).parent,
        PurePosixPath(config.security.audit_log).parent,
        PurePosixPath(config.ui.tokens_file).parent,
    ]
    for path in written:
        assert str(path) in volumes, f"{path} is written by the gateway: it must be a volume"
    assert str(PurePosixPath(IMAGE_CONFIG).parent) in volumes
    uid = _instruction("USER").args
    runs = " ".join(i.args for i in IMAGE.all("RUN"))
    assert f"chown {uid} /app/certs /app/data" in runs, "the non-root user must write its volumes"
    assert _instruction("WORKDIR").args == "/app", "relative paths (the defaults) land in /app"


# -- configuration and command -------------------------------------------------------------------


def test_serve_and_every_cli_command_read_the_image_configuration():
    """OCPP_GATEWAY_CONFIG is in the image's environment, so `docker exec` commands see it too."""
    assert IMAGE.env()[ENV_CONFIG_FILE] == IMAGE_CONFIG
    assert IMAGE_CONFIG in image_files(), "the image ships a default configuration file"
    config = _config()
    assert config.tls.certs_dir == "/app/certs"
    assert config.log.format == "json", "one JSON event per line for log collectors"


def test_a_missing_configuration_file_stops_the_start_naming_the_variable():
    """A directory mounted at /etc/ocpp-gateway without gateway.toml must not start silently."""
    with pytest.raises(ConfigError, match=ENV_CONFIG_FILE):
        load_config(None, {ENV_CONFIG_FILE: "/nonexistent/gateway.toml"})


def test_the_drain_fits_in_dockers_default_stop_timeout():
    """`docker stop` sends SIGKILL 10 s after SIGTERM unless told otherwise."""
    config = _config()
    assert config.server.drain_seconds + hypercorn_config(config).graceful_timeout < 10


def test_environment_only_configuration_is_possible():
    """`-e OCPP_GATEWAY_CONFIG=` (empty) runs on defaults plus variables, without a file."""
    config = container_config({**IMAGE.env(), ENV_CONFIG_FILE: ""}, {})
    assert config == GatewayConfig()


def test_python_output_is_unbuffered_and_the_base_is_a_supported_slim_python():
    env = IMAGE.env()
    assert env["PYTHONUNBUFFERED"] == "1", "log lines must reach `docker logs` at once"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1", "nothing is written to a read-only root"
    required = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    for stage in STAGES:
        assert stage.base.startswith("python:") and "-slim" in stage.base
        version = stage.base.removeprefix("python:").partition("-")[0]
        assert tuple(map(int, version.split("."))) >= tuple(map(int, required.split(".")))
    assert len({stage.base for stage in STAGES}) == 1, "wheels are built for the runtime's Python"


def test_tini_is_pid_1_and_sigterm_stops_the_container():
    """tini passes SIGTERM on to the gateway, which drains; it also reaps orphaned processes."""
    entrypoint = _instruction("ENTRYPOINT").exec_form()
    assert entrypoint == ["/usr/bin/tini", "--"]
    installs = [i.args for i in IMAGE.all("RUN") if "apt-get install" in i.args]
    assert installs and "tini" in installs[0].split(), "tini is installed in the runtime stage"
    assert _instruction("STOPSIGNAL").args == "SIGTERM"


def test_any_cli_command_replaces_the_default_serve_command():
    """`docker run IMAGE ocpp-gateway ca init` works: the ENTRYPOINT is only the init."""
    command = _instruction("CMD").exec_form()
    assert command == ["ocpp-gateway", "serve"]
    assert command[0] in PYPROJECT["project"]["scripts"]
    assert _instruction("ENTRYPOINT").exec_form()[-1] == "--"


def test_runtime_installs_the_wheels_of_the_build_stage():
    build = STAGES[0]
    assert build.name and any("pip wheel" in i.args for i in build.all("RUN"))
    installs = [i for i in IMAGE.all("RUN") if "pip install" in i.args]
    assert len(installs) == 1
    assert f"from={build.name}" in installs[0].flags.get("mount", ""), (
        "bind-mount the wheels: a COPY would leave them in a layer"
    )
    assert "--no-index" in installs[0].args, "only the wheels that were built, nothing fetched"
    copied = {source.name for source in IMAGE.copied_files().values()}
    assert not IMAGE.all("ADD") and not copied & {"gateway", "security"}, "no sources at runtime"


# -- files the image relies on -----------------------------------------------------------------


def _dockerignored(path: Path) -> bool:
    """Whether .dockerignore excludes `path` (or a folder above it); no `!` exceptions here."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not any(p.startswith("!") for p in patterns), "teach _dockerignored about exceptions"
    relative = PurePosixPath(path.relative_to(ROOT).as_posix())
    for candidate in (relative, *list(relative.parents)[:-1]):
        for pattern in patterns:
            if fnmatch.fnmatch(str(candidate), pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(candidate.name, pattern[3:])
            ):
                return True
    return False


def test_every_file_the_build_copies_exists_in_the_build_context():
    for stage in STAGES:
        for source in stage.copied_files().values():
            assert source.exists(), f"{source} is copied but does not exist"
            assert not _dockerignored(source), f"{source} is excluded by .dockerignore"
    for secret in ("data/charge-points.json", "certs/ca/root.key"):
        assert _dockerignored(ROOT / secret), f"{secret} must never reach the build context"


def test_console_and_ui_schema_are_package_data():
    """The image installs a wheel: every non-Python file of the packages must be package data."""
    static = resources.files("gateway.ui") / "static"
    assert {"console.html", "console.js", "console.css"} <= {p.name for p in static.iterdir()}
    assert (resources.files("gateway.ui") / "ui-api.schema.json").is_file()
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package in ("gateway", "security"):
        for path in (ROOT / package).rglob("*"):
            if path.is_dir() or path.suffix in (".py", ".pyc"):
                continue
            relative = path.relative_to(ROOT / package).as_posix()
            assert any(fnmatch.fnmatch(relative, p) for p in patterns.get(package, [])), (
                f"{package}/{relative} is missing from [tool.setuptools.package-data]"
            )


# -- the health check ----------------------------------------------------------------------------


def test_healthcheck_asks_healthz_on_the_status_port_then_the_ws_port():
    command = _healthcheck_command()
    assert "/usr/local/bin/" + command[0] in IMAGE.copied_files()
    urls = command[1:]
    assert [u.rpartition(":")[2] for u in urls] == [f"{STATUS}/healthz", f"{WS}/healthz"]
    assert all(u.startswith("http://127.0.0.1:") for u in urls)
    healthcheck = _instruction("HEALTHCHECK")
    assert healthcheck.flags["start-period"], "the first start may create a development CA"


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = int(self.path.strip("/").partition("/")[0])
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """http://127.0.0.1:PORT answering /<status>/... with that status."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port_url() -> str:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    port = server.server_address[1]
    server.server_close()
    return f"http://127.0.0.1:{port}/healthz"


def test_healthcheck_is_healthy_on_the_first_200(http_server, monkeypatch):
    monkeypatch.delenv("HEALTHCHECK_URLS", raising=False)
    check = _load_healthcheck()
    assert check.main(["x", f"{http_server}/200/healthz"]) == 0
    assert check.main(["x", _closed_port_url(), f"{http_server}/200/healthz"]) == 0


def test_healthcheck_is_unhealthy_without_a_200(http_server, monkeypatch, capsys):
    monkeypatch.delenv("HEALTHCHECK_URLS", raising=False)
    check = _load_healthcheck()
    assert check.main(["x", f"{http_server}/503/healthz", _closed_port_url()]) == 1
    assert "unhealthy" in capsys.readouterr().err
    assert check.main(["x"]) == 1, "Docker reserves exit status 2"


def test_healthcheck_urls_from_the_environment_win(http_server, monkeypatch):
    check = _load_healthcheck()
    monkeypatch.setenv("HEALTHCHECK_URLS", f"{http_server}/200/healthz")
    assert check.main(["x", _closed_port_url()]) == 0
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:9")  # never used for loopback checks
    assert check.main(["x"]) == 0
