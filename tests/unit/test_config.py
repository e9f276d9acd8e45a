"""Configuration: TOML file + OCPP_GATEWAY_<SECTION>_<KEY> environment, checked at start; CLI."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import (
    ENV_CONFIG_FILE,
    ConfigError,
    GatewayConfig,
    describe,
    load_config,
    reference,
)


def all_keys() -> set[str]:
    config = GatewayConfig()
    return {
        f"{section.name}.{option.name}"
        for section in dataclasses.fields(config)
        for option in dataclasses.fields(getattr(config, section.name))
    }


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(
    tmp_path: Path, toml: str | None = None, environ: dict[str, str] | None = None
) -> ConfigError:
    path = write(tmp_path, toml) if toml is not None else None
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ or {})
    return caught.value


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No OCPP_GATEWAY_ variable of the machine leaks into a test that reads os.environ."""
    for name in list(os.environ):
        if name.startswith("OCPP_GATEWAY_"):
            monkeypatch.delenv(name)


# -- loading -------------------------------------------------------------------------------------


def test_defaults_load_without_file_or_environment() -> None:
    config = load_config(environ={})
    assert config == GatewayConfig()
    assert config.server.ws_bind == ["0.0.0.0:9000"]
    assert config.server.path_prefix == "/ocpp"
    assert config.ocpp.versions == ["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]
    assert config.ocpp.validation == "strict"
    assert config.ocpp.gate_unknown_boot is False
    assert config.limits.max_bad_messages == 20
    assert config.limits.max_frame_bytes == 262144
    assert config.embedded.boot_status == "Accepted"


def test_other_environment_variables_are_ignored() -> None:
    environ = {"PATH": "/bin", "HOME": "/root", "OCPP_GATEWAYX": "1", "ocpp_gateway_x": "1"}
    assert load_config(environ=environ) == GatewayConfig()


def test_toml_file_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[server]
ws_bind = ["127.0.0.1:9100", "[::1]:9100"]
path_prefix = "/csms/ocpp"
workers = 4
permessage_deflate = true
drain_seconds = 2.5

[ocpp]
versions = ["ocpp1.6"]
validation = "lenient"
gate_unknown_boot = true
identity_extra_characters = " "

[limits]
max_frame_bytes = 65536
call_timeout_seconds = 5
max_bad_messages = 0

[embedded]
boot_status = "Pending"
heartbeat_interval_seconds = 60

[log]
format = "kv"
level = "debug"
""",
    )
    config = load_config(path, environ={})
    assert config.server.ws_bind == ["127.0.0.1:9100", "[::1]:9100"]
    assert config.server.path_prefix == "/csms/ocpp"
    assert config.server.workers == 4
    assert config.server.permessage_deflate is True
    assert config.server.drain_seconds == 2.5
    assert config.ocpp.versions == ["ocpp1.6"]
    assert config.ocpp.validation == "lenient"
    assert config.ocpp.gate_unknown_boot is True
    assert config.ocpp.identity_extra_characters == " "
    assert config.limits.max_frame_bytes == 65536
    assert config.limits.call_timeout_seconds == 5.0
    assert type(config.limits.call_timeout_seconds) is float
    assert config.limits.max_bad_messages == 0
    assert config.embedded.boot_status == "Pending"
    assert config.embedded.heartbeat_interval_seconds == 60
    assert (config.log.format, config.log.level) == ("kv", "debug")


def test_path_may_be_a_string(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_bad_messages = 3\n")
    assert load_config(str(path), environ={}).limits.max_bad_messages == 3


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_bad_messages = 3\nmax_frame_bytes = 4096\n")
    config = load_config(path, environ={"OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES": "7"})
    assert config.limits.max_bad_messages == 7
    assert config.limits.max_frame_bytes == 4096


def test_config_file_is_named_by_ocpp_gateway_config(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_bad_messages = 3\n")
    config = load_config(environ={ENV_CONFIG_FILE: str(path)})
    assert ENV_CONFIG_FILE == "OCPP_GATEWAY_CONFIG"
    assert config.limits.max_bad_messages == 3


def test_explicit_path_wins_over_ocpp_gateway_config(tmp_path: Path) -> None:
    chosen = write(tmp_path, "[limits]\nmax_bad_messages = 3\n")
    other = tmp_path / "other.toml"
    other.write_text("[limits]\nmax_bad_messages = 9\n", encoding="utf-8")
    config = load_config(chosen, environ={ENV_CONFIG_FILE: str(other)})
    assert config.limits.max_bad_messages == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:9000, [::]:9001", ["127.0.0.1:9000", "[::]:9001"]),
        ("127.0.0.1:9000", ["127.0.0.1:9000"]),
        (" a:1 ,, b:2 , ", ["a:1", "b:2"]),
    ],
)
def test_environment_lists_are_comma_separated(value: str, expected: list[str]) -> None:
    config = load_config(environ={"OCPP_GATEWAY_SERVER_WS_BIND": value})
    assert config.server.ws_bind == expected


def test_empty_environment_list_leaves_no_listener_and_is_refused() -> None:
    with pytest.raises(ConfigError) as error:
        load_config(environ={"OCPP_GATEWAY_SERVER_WS_BIND": "", "OCPP_GATEWAY_TLS_WSS_BIND": ""})
    assert error.value.key == "server.ws_bind"
    assert error.value.env == "OCPP_GATEWAY_SERVER_WS_BIND"


def test_environment_versions_list() -> None:
    config = load_config(environ={"OCPP_GATEWAY_OCPP_VERSIONS": "ocpp1.6, ocpp2.0.1"})
    assert config.ocpp.versions == ["ocpp1.6", "ocpp2.0.1"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_environment_booleans(value: str, expected: bool) -> None:
    config = load_config(environ={"OCPP_GATEWAY_OCPP_GATE_UNKNOWN_BOOT": value})
    assert config.ocpp.gate_unknown_boot is expected


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"),
    [
        ("OCPP_GATEWAY_SERVER_WORKERS", "4", ("server", "workers"), 4),
        ("OCPP_GATEWAY_LIMITS_MAX_FRAME_BYTES", " 65536 ", ("limits", "max_frame_bytes"), 65536),
        ("OCPP_GATEWAY_SERVER_DRAIN_SECONDS", "2.5", ("server", "drain_seconds"), 2.5),
        ("OCPP_GATEWAY_SERVER_DRAIN_SECONDS", "3", ("server", "drain_seconds"), 3.0),
        (
            "OCPP_GATEWAY_LIMITS_PING_INTERVAL_SECONDS",
            "0",
            ("limits", "ping_interval_seconds"),
            0.0,
        ),
        ("OCPP_GATEWAY_LOG_LEVEL", "warning", ("log", "level"), "warning"),
        ("OCPP_GATEWAY_SERVER_PATH_PREFIX", "/v2/ocpp", ("server", "path_prefix"), "/v2/ocpp"),
    ],
)
def test_environment_numbers_and_strings(
    name: str, value: str, attribute: tuple[str, str], expected: Any
) -> None:
    config = load_config(environ={name: value})
    actual = getattr(getattr(config, attribute[0]), attribute[1])
    assert actual == expected
    assert type(actual) is type(expected)


def test_float_option_accepts_a_toml_integer(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\ndrain_seconds = 3\n")
    value = load_config(path, environ={}).server.drain_seconds
    assert (value, type(value)) == (3.0, float)


@pytest.mark.parametrize("bind", ["0.0.0.0:9000", "[::]:9000", "localhost:0", "h:65535"])
def test_valid_binds_are_accepted(bind: str) -> None:
    assert load_config(environ={"OCPP_GATEWAY_SERVER_WS_BIND": bind}).server.ws_bind == [bind]


def test_space_is_an_allowed_identity_extra_character() -> None:
    """OCPP-J 3.1.1 example 2: the identity "RDAM 123"."""
    config = load_config(environ={"OCPP_GATEWAY_OCPP_IDENTITY_EXTRA_CHARACTERS": " "})
    assert config.ocpp.identity_extra_characters == " "


# -- errors name the key -------------------------------------------------------------------------

FILE_ERRORS = [
    # (TOML text, key named in the error, extra text expected in the message)
    ("[limit]\nmax_bad_messages = 1\n", "limit", "did you mean 'limits'"),
    ("[limits]\nmax_bad_message = 1\n", "limits.max_bad_message", "limits.max_bad_messages"),
    ("[server]\nwsbind = []\n", "server.wsbind", "did you mean 'server.ws_bind'"),
    ("limits = 5\n", "limits", "table"),
    ('[limits]\nmax_frame_bytes = "big"\n', "limits.max_frame_bytes", "int"),
    ("[limits]\nmax_frame_bytes = 2048.5\n", "limits.max_frame_bytes", "int"),
    ("[limits]\nmax_frame_bytes = true\n", "limits.max_frame_bytes", ""),
    ("[limits]\nmax_frame_bytes = 10\n", "limits.max_frame_bytes", "out of range"),
    ("[limits]\nmax_frame_bytes = 100000000\n", "limits.max_frame_bytes", "out of range"),
    ("[limits]\ncall_timeout_seconds = 0\n", "limits.call_timeout_seconds", "out of range"),
    ('[limits]\ncall_timeout_seconds = "30"\n', "limits.call_timeout_seconds", ""),
    ("[limits]\nping_interval_seconds = -1\n", "limits.ping_interval_seconds", "out of range"),
    ("[limits]\npong_timeout_seconds = 0\n", "limits.pong_timeout_seconds", "out of range"),
    ("[limits]\nmax_bad_messages = -1\n", "limits.max_bad_messages", "out of range"),
    ("[server]\nworkers = 0\n", "server.workers", "out of range"),
    ("[server]\nworkers = 257\n", "server.workers", "out of range"),
    ("[server]\ndrain_seconds = -0.5\n", "server.drain_seconds", "out of range"),
    ('[server]\npermessage_deflate = "yes"\n', "server.permessage_deflate", "boolean"),
    ('[server]\nworker_class = "trio"\n', "server.worker_class", "auto, uvloop, asyncio"),
    ('[server]\nws_bind = "0.0.0.0:9000"\n', "server.ws_bind", "list"),
    ("[server]\nws_bind = [9000]\n", "server.ws_bind", "list"),
    ('[server]\nws_bind = ["localhost"]\n', "server.ws_bind", "host:port"),
    ('[server]\nws_bind = [":9000"]\n', "server.ws_bind", "host:port"),
    ('[server]\nws_bind = ["host:"]\n', "server.ws_bind", "host:port"),
    ('[server]\nws_bind = ["host:http"]\n', "server.ws_bind", "host:port"),
    ('[server]\nws_bind = ["host:65536"]\n', "server.ws_bind", "host:port"),
    ("[server]\nws_bind = []\n[tls]\nwss_bind = []\n", "server.ws_bind", "no listener"),
    ('[server]\nws_bind = ["0.0.0.0:9443"]\n', "tls.wss_bind", "both ws and wss"),
    ('[status]\nbind = "127.0.0.1:9000"\n', "status.bind", "also a charge point listener"),
    ('[status]\nbind = "0.0.0.0:9443"\n', "status.bind", "also a charge point listener"),
    ("[tls]\noffload = true\n", "tls.offload", "no proxy is trusted"),
    ('[tls]\noffload_trusted_proxies = ["not-an-ip"]\n', "tls.offload_trusted_proxies", "not an"),
    ("[security]\nunknown_identity_status = 403\n", "security.unknown_identity_status", "401"),
    ('[server]\npath_prefix = "ocpp"\n', "server.path_prefix", "/ocpp"),
    ('[server]\npath_prefix = "/ocpp/"\n', "server.path_prefix", ""),
    ('[server]\npath_prefix = "/"\n', "server.path_prefix", ""),
    ('[server]\npath_prefix = "//ocpp"\n', "server.path_prefix", ""),
    ('[server]\npath_prefix = "/oc%70p"\n', "server.path_prefix", "only letters"),
    ("[server]\npath_prefix = 5\n", "server.path_prefix", "string"),
    ('[ocpp]\nversions = ["ocpp2.0"]\n', "ocpp.versions", "unknown subprotocol 'ocpp2.0'"),
    ('[ocpp]\nversions = ["OCPP1.6"]\n', "ocpp.versions", "unknown subprotocol"),
    ('[ocpp]\nversions = ["ocpp1.6", "ocpp1.6"]\n', "ocpp.versions", "twice"),
    ("[ocpp]\nversions = []\n", "ocpp.versions", "no OCPP version"),
    ('[ocpp]\nvalidation = "loose"\n', "ocpp.validation", "strict, lenient"),
    ('[embedded]\nboot_status = "accepted"\n', "embedded.boot_status", "Accepted"),
    ("[embedded]\nheartbeat_interval_seconds = 86401\n", "embedded.heartbeat_interval_seconds", ""),
    ('[log]\nlevel = "verbose"\n', "log.level", "debug, info, warning, error"),
]


@pytest.mark.parametrize(("toml", "key", "text"), FILE_ERRORS)
def test_file_error_names_the_key(tmp_path: Path, toml: str, key: str, text: str) -> None:
    error = config_error(tmp_path, toml)
    assert error.key == key
    message = str(error)
    assert f"'{key}'" in message
    assert text in message
    assert "Fix:" in message


@pytest.mark.parametrize("character", [":", "/", "?", "#", "%", "\\", "\t", "\n", "\x00"])
def test_identity_extra_characters_that_can_never_be_in_an_identity_are_refused(
    tmp_path: Path, character: str
) -> None:
    """OCPP-J 3.1.1: ':' separates the Basic-auth user and password; '/', '?', '#', '%' are URL
    syntax; control characters are not printable."""
    error = config_error(
        tmp_path, environ={"OCPP_GATEWAY_OCPP_IDENTITY_EXTRA_CHARACTERS": f"ab{character}"}
    )
    assert error.key == "ocpp.identity_extra_characters"
    assert repr(character) in str(error)


@pytest.mark.parametrize("prefix", ["/ocpé", "/oc pp", "/ocpp?x", "/ocpp#x"])
def test_path_prefix_that_no_request_path_can_match_is_refused(tmp_path: Path, prefix: str) -> None:
    """The module promises every value is checked at start: a prefix with a non-ASCII character
    (IdentityRules encodes it as ASCII), a space or URL syntax can never match a raw path."""
    error = config_error(tmp_path, environ={"OCPP_GATEWAY_SERVER_PATH_PREFIX": prefix})
    assert error.key == "server.path_prefix"


ENV_ERRORS = [
    # (variable, value, key named in the error)
    ("OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES", "many", "limits.max_bad_messages"),
    ("OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES", "2.5", "limits.max_bad_messages"),
    ("OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES", "", "limits.max_bad_messages"),
    ("OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES", "-3", "limits.max_bad_messages"),
    ("OCPP_GATEWAY_LIMITS_CALL_TIMEOUT_SECONDS", "soon", "limits.call_timeout_seconds"),
    ("OCPP_GATEWAY_LIMITS_CALL_TIMEOUT_SECONDS", "nan", "limits.call_timeout_seconds"),
    ("OCPP_GATEWAY_LIMITS_CALL_TIMEOUT_SECONDS", "inf", "limits.call_timeout_seconds"),
    ("OCPP_GATEWAY_OCPP_GATE_UNKNOWN_BOOT", "maybe", "ocpp.gate_unknown_boot"),
    ("OCPP_GATEWAY_OCPP_GATE_UNKNOWN_BOOT", "", "ocpp.gate_unknown_boot"),
    ("OCPP_GATEWAY_OCPP_VERSIONS", "ocpp1.6, ocpp1.5", "ocpp.versions"),
    ("OCPP_GATEWAY_OCPP_VERSIONS", "ocpp1.6,ocpp1.6", "ocpp.versions"),
    ("OCPP_GATEWAY_OCPP_VERSIONS", " , ", "ocpp.versions"),
    ("OCPP_GATEWAY_OCPP_VALIDATION", "Strict", "ocpp.validation"),
    ("OCPP_GATEWAY_SERVER_WS_BIND", "0.0.0.0", "server.ws_bind"),
    ("OCPP_GATEWAY_SERVER_PATH_PREFIX", "/ocpp/", "server.path_prefix"),
    ("OCPP_GATEWAY_LOG_FORMAT", "xml", "log.format"),
]


@pytest.mark.parametrize(("name", "value", "key"), ENV_ERRORS)
def test_environment_error_names_the_key(tmp_path: Path, name: str, value: str, key: str) -> None:
    error = config_error(tmp_path, environ={name: value})
    assert error.key == key
    assert f"'{key}'" in str(error)


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGE", "OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES"),
        ("OCPP_GATEWAY_SERVER_WSBIND", "OCPP_GATEWAY_SERVER_WS_BIND"),
        ("OCPP_GATEWAY_limits_max_bad_messages", ""),
    ],
)
def test_unknown_ocpp_gateway_environment_variable_is_an_error(
    tmp_path: Path, name: str, suggestion: str
) -> None:
    error = config_error(tmp_path, environ={name: "1"})
    assert error.key == name
    assert f"'{name}'" in str(error)
    assert "unknown key" in str(error)
    assert suggestion in str(error)


def test_unknown_key_without_close_match_lists_the_known_keys(tmp_path: Path) -> None:
    error = config_error(tmp_path, "[limits]\nzzzzzzzz = 1\n")
    assert error.key == "limits.zzzzzzzz"
    assert "limits.max_frame_bytes" in str(error)


def test_environment_error_wins_even_when_the_file_is_valid(tmp_path: Path) -> None:
    error = config_error(
        tmp_path, "[limits]\nmax_bad_messages = 3\n", {"OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES": "x"}
    )
    assert error.key == "limits.max_bad_messages"


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ={})
    assert caught.value.key == "--config"
    assert str(missing) in str(caught.value)


def test_missing_file_named_by_the_environment_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(environ={ENV_CONFIG_FILE: str(missing)})
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize("text", ["[limits\n", "[limits]\nmax_bad_messages = \n", "a = = 1\n"])
def test_invalid_toml_is_an_error(tmp_path: Path, text: str) -> None:
    error = config_error(tmp_path, text)
    assert error.key == "--config"
    assert "not valid TOML" in str(error)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# -- describe() and reference() ----------------------------------------------------------------


def test_describe_returns_plain_data_for_every_key() -> None:
    config = load_config(environ={"OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES": "5"})
    described = describe(config)
    assert json.loads(json.dumps(described)) == described
    assert {f"{s}.{k}" for s, values in described.items() for k in values} == all_keys()
    assert described["limits"]["max_bad_messages"] == 5
    assert described["server"]["ws_bind"] == ["0.0.0.0:9000"]
    assert described["ocpp"]["versions"] == ["ocpp2.1", "ocpp2.0.1", "ocpp1.6"]


def test_reference_lists_every_key_with_its_environment_variable() -> None:
    rows = reference()
    assert {key for key, *_ in rows} == all_keys()
    assert len(rows) == len(all_keys())
    defaults = describe(GatewayConfig())
    for key, env, default, help_text in rows:
        section, name = key.split(".")
        assert env == f"OCPP_GATEWAY_{section.upper()}_{name.upper()}"
        assert default == defaults[section][name]
        assert help_text


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def test_every_referenced_environment_variable_is_accepted_with_its_default() -> None:
    for key, env, default, _ in reference():
        config = load_config(environ={env: _env_text(default)})
        assert config == GatewayConfig(), key


# -- the CLI -------------------------------------------------------------------------------------


@pytest.mark.usefixtures("clean_environ")
def test_cli_config_show_prints_toml_sections() -> None:
    result = CliRunner().invoke(main, ["config", "show"])
    assert result.exit_code == 0, result.output
    for section in ("[server]", "[ocpp]", "[limits]", "[embedded]", "[log]"):
        assert section in result.stdout
    assert "max_bad_messages = 20" in result.stdout
    assert 'ws_bind = ["0.0.0.0:9000"]' in result.stdout
    assert "gate_unknown_boot = false" in result.stdout


@pytest.mark.usefixtures("clean_environ")
def test_cli_config_show_json_parses_as_json() -> None:
    result = CliRunner().invoke(main, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == describe(GatewayConfig())


@pytest.mark.usefixtures("clean_environ")
def test_cli_config_show_reads_the_file_and_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_bad_messages = 3\nmax_frame_bytes = 4096\n")
    result = CliRunner(env={"OCPP_GATEWAY_LIMITS_MAX_FRAME_BYTES": "8192"}).invoke(
        main, ["config", "show", "--json", "--config", str(path)]
    )
    assert result.exit_code == 0, result.output
    limits = json.loads(result.stdout)["limits"]
    assert (limits["max_bad_messages"], limits["max_frame_bytes"]) == (3, 8192)


@pytest.mark.usefixtures("clean_environ")
def test_cli_config_show_reads_the_file_named_by_ocpp_gateway_config(tmp_path: Path) -> None:
    path = write(tmp_path, "[limits]\nmax_bad_messages = 4\n")
    result = CliRunner(env={ENV_CONFIG_FILE: str(path)}).invoke(main, ["config", "show", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["limits"]["max_bad_messages"] == 4


@pytest.mark.usefixtures("clean_environ")
def test_cli_invalid_environment_value_exits_2_naming_the_key() -> None:
    result = CliRunner(env={"OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES": "lots"}).invoke(
        main, ["config", "show"]
    )
    assert result.exit_code == 2
    assert "limits.max_bad_messages" in result.stderr
    assert result.stdout == ""


@pytest.mark.usefixtures("clean_environ")
def test_cli_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["config", "show", "--config", str(tmp_path / "missing.toml")]
    )
    assert result.exit_code == 2
    assert "missing.toml" in result.stderr


def test_cli_config_reference_prints_a_markdown_table_of_every_key() -> None:
    result = CliRunner().invoke(main, ["config", "reference"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "| key | environment variable | default | meaning |"
    assert lines[1] == "|---|---|---|---|"
    rows = lines[2:]
    assert len(rows) == len(all_keys())
    for key, env, _, _ in reference():
        assert any(row.startswith(f"| `{key}` | `{env}` | ") for row in rows), key
    assert all(row.startswith("| ") and row.endswith(" |") for row in rows)
    assert "| `limits.max_bad_messages` | `OCPP_GATEWAY_LIMITS_MAX_BAD_MESSAGES` | `20` |" in (
        result.stdout
    )
