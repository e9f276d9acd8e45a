"""Documentation generated from code must match the code."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_operator_configuration_reference_matches_the_configuration_model():
    generated = CliRunner().invoke(main, ["config", "reference"]).output
    assert generated.strip() in (ROOT / "docs" / "operators.md").read_text(), (
        "regenerate with: ocpp-gateway config reference"
    )


def test_readme_gives_the_run_and_test_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_published_ui_api_schema_is_the_one_the_gateway_enforces():
    enforced = (ROOT / "gateway" / "ui" / "ui-api.schema.json").read_text()
    assert (ROOT / "docs" / "ui-api.schema.json").read_text() == enforced, (
        "copy gateway/ui/ui-api.schema.json to docs/"
    )
