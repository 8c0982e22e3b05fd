"""`agentic validate [PATH]` and the CLI's shared handling of configuration errors."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.cli._common import config_errors, load_settings
from agentic.errors import CatalogError, ConfigError
from tests.factories import (
    EXAMPLE_CONFIG,
    GATING_VARIABLES,
    SCRIPTED_AGENT,
    make_catalog,
    task_yaml,
    workflow_yaml,
)

_register()
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_gating_variables(monkeypatch):
    for name in GATING_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_example_catalog_is_valid_without_any_api_key():
    result = runner.invoke(app, ["validate", str(EXAMPLE_CONFIG)])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "6 agent providers, 2 MCP providers, 1 tool, 1 guardrail, 2 workflows: OK"
    )


def test_without_a_path_the_configured_catalog_roots_are_validated(tmp_path, monkeypatch):
    make_catalog(tmp_path / "base")
    extra = make_catalog(tmp_path / "extra", {"agent_providers/gamma.yaml": None})
    (extra / "agent_providers" / "gamma.yaml").write_text(SCRIPTED_AGENT.format(id="gamma"))
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(tmp_path / "base"))
    monkeypatch.setenv("AGENTIC_EXTRA_CONFIG_DIRS", f'["{extra}"]')

    result = runner.invoke(app, ["validate"])

    assert result.exit_code == 0, result.output
    assert "3 agent providers, 1 MCP provider, 1 workflow: OK" in result.stdout


def test_a_broken_catalog_exits_2_and_prints_every_problem_with_file_and_field(tmp_path):
    root = make_catalog(
        tmp_path,
        {
            "agent_providers/alpha.yaml": SCRIPTED_AGENT.format(id="alpha") + "colour: red\n",
            "workflows/flow.yaml": workflow_yaml(task_yaml("one", "gamma")),
        },
    )

    result = runner.invoke(app, ["validate", str(root)])

    assert result.exit_code == 2
    lines = result.stdout.splitlines()
    assert lines == [
        f"{root / 'agent_providers' / 'alpha.yaml'}: colour: unknown field",
        f"{root / 'workflows' / 'flow.yaml'}: workflow.tasks[0].agent_provider_id: "
        "unknown agent provider 'gamma'",
    ]
    assert "2 problems found" in result.stderr


def test_one_file_can_be_validated_on_its_own(tmp_path):
    root = make_catalog(
        tmp_path, {"workflows/flow.yaml": workflow_yaml(task_yaml("a", depends_on="[a]"))}
    )

    ok = runner.invoke(app, ["validate", str(root / "agent_providers" / "alpha.yaml")])
    bad = runner.invoke(app, ["validate", str(root / "workflows" / "flow.yaml")])

    assert ok.exit_code == 0, ok.output
    assert bad.exit_code == 2
    assert "flow.yaml: workflow.tasks[0].depends_on: depends_on cycle: a -> a" in bad.stdout


def test_a_path_that_does_not_exist_exits_2(tmp_path):
    result = runner.invoke(app, ["validate", str(tmp_path / "nowhere")])

    assert result.exit_code == 2
    assert "nowhere: no such file or directory" in result.stdout


def test_a_placeholder_only_an_input_fills_is_a_warning_naming_file_workflow_and_task(tmp_path):
    pitch = workflow_yaml(
        "- {id: pitch, agent_provider_id: alpha, description: Pitch,"
        ' expected_output: "Slides on {topic} for {audience} in {city}"}\n'
    )
    root = make_catalog(tmp_path, {"workflows/flow.yaml": pitch})
    flow = root / "workflows" / "flow.yaml"
    warning = (
        f"{flow}: warning: workflow 'flow', task 'pitch' (expected_output) uses {{audience}}, "
        "{city}, which only inputs fill: `agentic run` refuses it without --input audience=… "
        "--input city=…"
    )

    for path in (root, flow):  # the catalog, or the file alone
        result = runner.invoke(app, ["validate", str(path)])

        # Valid: the run may well give --input audience=…; {topic} is always filled.
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == "2 agent providers, 1 MCP provider, 1 workflow: OK"
        assert result.stderr.splitlines() == [warning, "1 warning"]


def test_a_placeholder_in_the_agent_of_a_step_is_a_warning_too(tmp_path):
    beta = SCRIPTED_AGENT.format(id="beta").replace("role: Tester", "role: Tester for {team}")
    root = make_catalog(tmp_path, {"agent_providers/beta.yaml": beta})

    result = runner.invoke(app, ["validate", str(root)])

    assert result.exit_code == 0, result.output
    assert (
        f"{root / 'workflows' / 'flow.yaml'}: warning: workflow 'flow', agent provider 'beta' "
        "(role) uses {team}, which only inputs fill: `agentic run` refuses it without "
        "--input team=…" in result.stderr
    )


def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch):
    monkeypatch.setenv("AGENTIC_EXTRA_CONFIG_DIRS", "not json")

    result = runner.invoke(app, ["validate"])

    assert result.exit_code == 2
    assert result.stderr.startswith("error: invalid setting")
    assert len(result.stderr.strip().splitlines()) == 1


# --- the shared error handling every command uses ------------------------------------------


@pytest.mark.parametrize("color", [True, False])
def test_a_config_error_in_any_command_is_one_red_line_on_stderr_and_exit_2(monkeypatch, color):
    monkeypatch.delenv("NO_COLOR", raising=False)
    if color:
        monkeypatch.setenv("FORCE_COLOR", "1")
    else:
        monkeypatch.delenv("FORCE_COLOR", raising=False)
    demo = typer.Typer()

    @demo.command()
    @config_errors()
    def broken(name: str = typer.Option("x")) -> None:
        raise CatalogError(
            "unknown agent provider 'a'", file="flows/x.yaml", field="workflow.tasks[0]"
        )

    @demo.command()
    def other() -> None:
        """A second command keeps typer in sub-command mode."""

    result = runner.invoke(demo, ["broken", "--name", "y"])

    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert ("\x1b[31m" in result.stderr) == color  # red, unless not on a terminal
    assert "flows/x.yaml: workflow.tasks[0]: unknown agent provider 'a'" in result.stderr


def test_load_settings_reports_a_bad_value_as_a_config_error(monkeypatch):
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "carrier-pigeon")

    with pytest.raises(ConfigError, match="invalid setting: execution_backend"):
        load_settings()
