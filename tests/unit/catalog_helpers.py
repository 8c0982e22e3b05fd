"""Small catalogs written into a temporary directory, for catalog, materializer and CLI tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from agentic.catalog import Problem, validate_path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "config"

SCRIPTED_AGENT = """\
id: {id}
type: scripted
role: Tester
goal: Test {{topic}}
backstory: Writes tests.
script:
  replies: ["done with {{topic}}"]
"""

BASE_FILES: dict[str, str] = {
    "agent_providers/alpha.yaml": SCRIPTED_AGENT.format(id="alpha"),
    "agent_providers/beta.yaml": SCRIPTED_AGENT.format(id="beta"),
    "mcp_providers/tools.yaml": """\
        id: tools
        stdio: {command: python, args: ["-m", "agentic.tools.demo_mcp"]}
    """,
    "workflows/flow.yaml": """\
        workflow:
          name: flow
          topic: testing
          agent_providers: [alpha, beta]
          mcp_providers: [tools]
          tasks:
            - id: one
              agent_provider_id: alpha
              description: Study {topic}
              expected_output: notes
            - {id: two, agent_provider_id: beta, description: Write, expected_output: text}
          task_sequence: [one, two]
    """,
}


def write_files(root: Path, files: dict[str, str | None]) -> Path:
    """Write ``files`` (relative path -> text, ``None`` deletes) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def make_catalog(root: Path, files: dict[str, str | None] | None = None) -> Path:
    """A valid small catalog under ``root``, with ``files`` added, replaced or deleted."""
    write_files(root, dict(BASE_FILES))
    return write_files(root, files or {})


def workflow_yaml(tasks: str, *, extra: str = "", agents: str = "[alpha, beta]") -> str:
    """A workflow file named ``flow`` with the given YAML task list (already indented 4)."""
    return (
        "workflow:\n"
        "  name: flow\n"
        "  topic: testing\n"
        f"  agent_providers: {agents}\n"
        "  mcp_providers: [tools]\n"
        "  tasks:\n"
        f"{textwrap.indent(textwrap.dedent(tasks), '    ')}"
        f"{extra}"
    )


def task(task_id: str, agent: str = "alpha", **fields: str) -> str:
    """One task as a YAML flow-mapping list item; ``fields`` values are YAML text."""
    extra = "".join(f", {name}: {value}" for name, value in fields.items())
    body = f"id: {task_id}, agent_provider_id: {agent}, description: d, expected_output: e"
    return f"- {{{body}{extra}}}\n"


def inline_agent(agent_id: str, script: str = "{replies: [hi]}") -> str:
    """An inline scripted agent provider in YAML flow style."""
    return f"{{id: {agent_id}, type: scripted, role: r, goal: g, backstory: b, script: {script}}}"


def problems_of(root: Path) -> list[Problem]:
    """Every problem ``agentic validate`` would print for ``root``."""
    return validate_path(root)


def only_problem(root: Path) -> Problem:
    """The one problem of ``root`` (fails when there are none or several)."""
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


def alias_bomb(levels: int = 10, width: int = 10, *, flow: bool = False) -> str:
    """A "billion laughs" document: each anchored list holds ``width`` aliases of the previous.

    About 400 bytes that expand to ``width ** levels`` strings. Block style is a mapping of
    one list per line (level ``n`` on line ``n + 1``); flow style is one line, for ``--set``.
    """
    lists = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    lists += [f"&l{n} [" + ", ".join([f"*l{n - 1}"] * width) + "]" for n in range(1, levels)]
    if flow:
        return "[" + ", ".join(lists) + "]"
    return "".join(f"k{n}: {body}\n" for n, body in enumerate(lists))
