"""`agentic import crewai`: a CrewAI project's YAML becomes catalogs that load and run
(docs/compatibility.md, "CrewAI projects").

Each test writes a project in `crewai create crew`'s layout (`src/<name>/config/agents.yaml`
and `tasks.yaml`) to ``tmp_path``, converts it with the command and reads the result with
agentic's own catalog loader; one runs the imported workflow offline in process.
"""

from __future__ import annotations

import warnings

import pytest
from typer.testing import CliRunner

from agentic.catalog import check_path, load_catalog, load_workflow
from agentic.catalog.crewai_import import map_llm
from agentic.cli import _register, app
from tests.fixtures.crewai_project import AGENTS, TASKS, write_project
from tests.parity import run_and_collect

with warnings.catch_warnings():
    # CrewAI loads once per test session (test_origin_catalogs loads it the same way): the
    # run below then measures the run, not the import. It emits an ImportWarning about its
    # own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    import agentic.runtime.agents  # noqa: F401

# Importing CrewAI (for the one run) emits an ImportWarning about its own package layout.
pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

_register()
runner = CliRunner()


def import_crewai(*args: str):
    return runner.invoke(app, ["import", "crewai", *args])


def test_a_crewai_project_imported_offline_validates_and_runs_in_process(tmp_path):
    write_project(tmp_path / "proj")
    out = tmp_path / "catalog"

    result = import_crewai(str(tmp_path / "proj"), "--out", str(out), "--offline")

    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.yaml")) == [
        "agent_providers/analyst.yaml",
        "agent_providers/reporting_analyst.yaml",
        "agent_providers/researcher.yaml",
        "workflows/latest_ai.yaml",
    ]
    assert "agentic run latest_ai --topic … --input current_year=…" in result.stdout
    wf = load_workflow("latest_ai", load_catalog([out], env={}))
    assert wf.task_sequence == ["research_task", "analysis_task", "reporting_task"]
    # `context` is depends_on; a task without it saw every earlier output in CrewAI.
    assert [t.depends_on for t in wf.tasks] == [
        [],
        ["research_task"],
        ["research_task", "analysis_task"],
    ]
    assert {p.type for p in wf.agent_providers} == {"scripted"}

    outputs = run_and_collect(
        "inprocess", wf, {"topic": "AI agents", "current_year": "2026"}, str(tmp_path / "store")
    )

    assert outputs == {
        "research_task": "research_task: an offline placeholder answer from the researcher agent.",
        "analysis_task": "analysis_task: an offline placeholder answer from the analyst agent.",
        "reporting_task": (
            "reporting_task: an offline placeholder answer from the reporting_analyst agent."
        ),
    }


def test_each_agent_gets_the_provider_its_llm_names_and_texts_keep_their_placeholders(tmp_path):
    write_project(tmp_path / "proj")
    out = tmp_path / "catalog"

    result = import_crewai(str(tmp_path / "proj"), "--out", str(out), "--llm", "ollama/llama3.2")

    assert result.exit_code == 0, result.output
    assert check_path(out).problems == []
    providers = load_catalog([out], env={}).agent_providers
    assert {pid: (p.type, p.model) for pid, p in providers.items()} == {
        "researcher": ("openai", "gpt-4o-mini"),
        "analyst": ("anthropic", "claude-3-5-haiku-latest"),
        "reporting_analyst": ("ollama", "llama3.2"),
    }
    assert providers["researcher"].role == "{topic} Senior Data Researcher"
    assert providers["researcher"].backstory == (
        "You're a seasoned researcher with a knack for uncovering the latest developments in "
        "{topic}."
    )
    assert providers["analyst"].backstory == "You read between the lines.\nAnd you keep it short."
    assert providers["reporting_analyst"].verbose is True
    wf = load_workflow("latest_ai", load_catalog([out], env={}), check_env=False)
    assert wf.task("research_task").description == (
        "Conduct a thorough research about {topic}. Make sure you find any interesting and "
        "relevant information given the current year is {current_year}."
    )
    assert "reporting_analyst.llm: not set: uses --llm ollama/llama3.2" in result.stdout


def test_every_field_that_is_not_carried_over_is_one_line_naming_agent_or_task(tmp_path):
    config = write_project(tmp_path / "proj")

    result = import_crewai(str(tmp_path / "proj"), "--out", str(tmp_path / "c"), "--offline")

    assert result.exit_code == 0, result.output
    dropped = [line for line in result.stdout.splitlines() if "not carried over" in line]
    assert [line.split(": not carried over")[0] for line in dropped] == [
        f"{config}/agents.yaml: researcher.tools",
        f"{config}/agents.yaml: researcher.max_iter",
        f"{config}/tasks.yaml: analysis_task.async_execution",
        f"{config}/tasks.yaml: reporting_task.output_file",
    ]
    assert "'report.md'" in dropped[-1]


@pytest.mark.parametrize(
    ("llm", "mapped"),
    [
        ("openai/gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("gpt-4o", ("openai", "gpt-4o")),
        ("o3-mini", ("openai", "o3-mini")),
        ("anthropic/claude-3-5-sonnet-20241022", ("anthropic", "claude-3-5-sonnet-20241022")),
        ("claude-3-opus-20240229", ("anthropic", "claude-3-opus-20240229")),
        ("ollama/llama3.1", ("ollama", "llama3.1")),
        ("ollama_chat/qwen2.5:7b", ("ollama", "qwen2.5:7b")),
        ("groq/llama-3.1-8b-instant", ("litellm", "groq/llama-3.1-8b-instant")),
        ("llama3.1", None),
        ("my_custom_llm", None),
        ("openai/", None),
        ("gpt 4", None),
    ],
)
def test_an_llm_string_maps_to_a_provider_only_when_it_says_which(llm, mapped):
    assert map_llm(llm) == mapped


def test_an_agent_without_a_model_is_refused_unless_llm_or_offline_is_given(tmp_path):
    config = write_project(tmp_path / "proj")
    out = tmp_path / "catalog"

    result = import_crewai(str(tmp_path / "proj"), "--out", str(out))

    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {config}/agents.yaml: reporting_analyst.llm: not set (CrewAI took the model "
        "from the MODEL variable): pass --llm PROVIDER/MODEL"
    )
    assert not out.exists()


def test_the_config_folder_can_be_given_and_a_crew_without_context_stays_a_sequence(tmp_path):
    tasks = "\n".join(line for line in TASKS.splitlines() if "context:" not in line)
    config = write_project(tmp_path / "proj", tasks=tasks, name="trip-planner")
    out = tmp_path / "catalog"

    result = import_crewai(str(config), "--out", str(out), "--offline")

    assert result.exit_code == 0, result.output
    wf = load_workflow("trip-planner", load_catalog([out], env={}))
    assert not wf.uses_depends_on  # each task sees every earlier output, as in CrewAI


def test_existing_files_are_kept_unless_force(tmp_path):
    write_project(tmp_path / "proj")
    out = tmp_path / "catalog"
    (out / "workflows").mkdir(parents=True)
    (out / "workflows" / "latest_ai.yaml").write_text("# mine\n", encoding="utf-8")

    kept = import_crewai(str(tmp_path / "proj"), "--out", str(out), "--offline")
    forced = import_crewai(str(tmp_path / "proj"), "--out", str(out), "--offline", "--force")

    assert kept.exit_code == 2
    assert "latest_ai.yaml exists: pass --force to overwrite" in kept.stderr
    assert forced.exit_code == 0, forced.output
    assert "name: latest_ai" in (out / "workflows" / "latest_ai.yaml").read_text()


CYCLE = TASKS.replace(
    "  agent: researcher\n", "  agent: researcher\n  context: [reporting_task]\n"
).replace("  output_file: report.md\n", "  context: [analysis_task]\n")


BAD_PROJECTS = {
    "no tasks.yaml": (
        AGENTS,
        None,
        "tasks.yaml",
        "no such file (agents.yaml is there; a crew needs both)",
    ),
    "malformed YAML": ("researcher: [role\n", TASKS, "agents.yaml: line 2, column 1", "malformed"),
    "a missing goal": (
        AGENTS.replace("  goal: Weigh", "  gaol: Weigh"),
        TASKS,
        "agents.yaml: analyst.goal",
        "required field is missing",
    ),
    "an unknown agent": (
        AGENTS,
        TASKS.replace("agent: analyst", "agent: analyts"),
        "tasks.yaml: analysis_task.agent",
        "unknown agent 'analyts' (agents.yaml has 'researcher', 'analyst', 'reporting_analyst')",
    ),
    "an unknown context": (
        AGENTS,
        TASKS.replace("[research_task]", "[reserch]"),
        "tasks.yaml: analysis_task.context[0]",
        "unknown task 'reserch'",
    ),
    "a context on a later task": (
        AGENTS,
        TASKS.replace(
            "  agent: researcher\n", "  agent: researcher\n  context: [reporting_task]\n"
        ),
        "tasks.yaml: research_task.context[0]",
        "'reporting_task' comes after 'research_task' in tasks.yaml",
    ),
    "a context cycle": (
        AGENTS,
        CYCLE,
        "tasks.yaml: research_task.context[0]",
        "context cycle: research_task -> reporting_task -> analysis_task -> research_task",
    ),
}


@pytest.mark.parametrize(
    ("agents", "tasks", "where", "message"), list(BAD_PROJECTS.values()), ids=list(BAD_PROJECTS)
)
def test_bad_projects_exit_2_naming_the_file_and_the_field(tmp_path, agents, tasks, where, message):
    config = write_project(tmp_path / "proj", agents=agents, tasks=tasks)

    result = import_crewai(str(tmp_path / "proj"), "--out", str(tmp_path / "c"), "--offline")

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {config}/{where}: {message}"), result.stderr
    assert not (tmp_path / "c").exists()


def test_structured_output_is_not_carried_over_and_the_line_points_to_output_schema(tmp_path):
    tasks = TASKS.replace("  output_file: report.md\n", "  output_json: Report\n")
    config = write_project(tmp_path / "proj", tasks=tasks)

    result = import_crewai(str(tmp_path / "proj"), "--out", str(tmp_path / "c"), "--offline")

    assert result.exit_code == 0, result.output
    (line,) = [ln for ln in result.stdout.splitlines() if "reporting_task.output_json" in ln]
    assert line.startswith(f"{config}/tasks.yaml: reporting_task.output_json: not carried over")
    assert "output_schema: <the class's JSON Schema>" in line
