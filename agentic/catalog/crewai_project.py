"""A CrewAI project's YAML, found and checked: what :mod:`agentic.catalog.crewai_import`
converts.

``crewai create crew NAME`` writes ``NAME/src/NAME/config/agents.yaml`` (agent name →
``role``, ``goal``, ``backstory``, optional ``llm``, ``tools``, ``verbose``, ...) and
``config/tasks.yaml`` (task name → ``description``, ``expected_output``, ``agent``, optional
``context``, ``output_file``, ...), in the order the crew runs them. Only these two files are
read: ``crew.py`` (the process, the tools, the callbacks) is Python, and a catalog never
imports code.

Every problem is a :class:`~agentic.errors.CatalogError` naming the file and the field
(``config/tasks.yaml: write.context[0]: unknown task 'reserch' ...``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentic.catalog.files import read_yaml
from agentic.errors import CatalogError, ConfigError

AGENT_TEXTS = ("role", "goal", "backstory")
TASK_TEXTS = ("description", "expected_output")
_FLAGS = ("verbose", "allow_delegation")


@dataclass(frozen=True)
class ProjectFiles:
    """Where a CrewAI project's two YAML files are."""

    agents: Path
    tasks: Path

    @property
    def config_dir(self) -> Path:
        return self.agents.parent

    @property
    def project_name(self) -> str:
        """The crew's name: the folder holding ``config/`` (``src/<name>/config``)."""
        folder = self.config_dir.resolve()
        return folder.parent.name if folder.name == "config" else folder.name


@dataclass(frozen=True)
class CrewProject:
    """The checked YAML of a CrewAI project: agents and tasks by name, in file order."""

    files: ProjectFiles
    agents: dict[str, dict[str, Any]]
    tasks: dict[str, dict[str, Any]]


def find_project(path: str | Path) -> ProjectFiles:
    """The ``agents.yaml`` and ``tasks.yaml`` of a project root or of its config folder.

    Looks in ``path``, then ``path/config``, then ``path/src/*/config``.

    Raises:
        ConfigError: neither file found, only one of them, or several projects under ``src``.
    """
    root = Path(path)
    if not root.is_dir():
        message = "no such directory: give a CrewAI project or its config folder"
        raise CatalogError(message, file=str(path))
    for folder in (root, root / "config"):
        if _has_config(folder):
            return _pair(folder)
    projects = [c for c in sorted(root.glob("src/*/config")) if _has_config(c)]
    if not projects:
        message = "no agents.yaml or tasks.yaml here, in config/ or in src/*/config/"
        raise CatalogError(message, file=str(path))
    if len(projects) > 1:
        shown = ", ".join(str(p) for p in projects)
        raise ConfigError(f"{path}: several CrewAI projects ({shown}): give one config folder")
    return _pair(projects[0])


def read_project(files: ProjectFiles) -> CrewProject:
    """Read and check both files.

    Raises:
        CatalogError: malformed YAML, a missing or mistyped field, a task naming an unknown
            agent, or a ``context`` naming an unknown task, a later one, or forming a cycle.
    """
    agents = _entries(files.agents, "agent")
    for name, agent in agents.items():
        _check_agent(name, agent, str(files.agents))
    tasks = _entries(files.tasks, "task")
    for name, task in tasks.items():
        _check_task(name, task, str(files.tasks), agents)
    _check_contexts(tasks, str(files.tasks))
    return CrewProject(files, agents, tasks)


def context_of(task: dict[str, Any]) -> list[str] | None:
    """A task's ``context`` (``None`` when it gives none: it sees every earlier output)."""
    value = task.get("context")
    return None if value is None else list(value)


def _has_config(folder: Path) -> bool:
    return _yaml_in(folder, "agents") is not None or _yaml_in(folder, "tasks") is not None


def _pair(folder: Path) -> ProjectFiles:
    agents, tasks = _yaml_in(folder, "agents"), _yaml_in(folder, "tasks")
    if agents is None or tasks is None:
        missing, present = ("agents", "tasks") if agents is None else ("tasks", "agents")
        message = f"no such file ({present}.yaml is there; a crew needs both)"
        raise CatalogError(message, file=str(folder / f"{missing}.yaml"))
    return ProjectFiles(agents=agents, tasks=tasks)


def _yaml_in(folder: Path, stem: str) -> Path | None:
    for suffix in (".yaml", ".yml"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def _entries(path: Path, what: str) -> dict[str, dict[str, Any]]:
    shown = str(path)
    data = read_yaml(path, shown)
    if not isinstance(data, dict) or not data:
        raise CatalogError(f"expected a mapping of {what} names to their settings", file=shown)
    for name, settings in data.items():
        if not isinstance(name, str):
            raise CatalogError(f"{what} names must be text, not {name!r}", file=shown)
        if not isinstance(settings, dict):
            raise CatalogError(
                f"expected the {what}'s settings (a mapping)", file=shown, field=name
            )
    return data


def _check_agent(name: str, agent: dict[str, Any], shown: str) -> None:
    for field in AGENT_TEXTS:
        _require_text(agent, field, shown, name)
    llm = agent.get("llm")
    if llm is not None and not isinstance(llm, str):
        raise CatalogError(
            "expected a model name such as openai/gpt-4o-mini", file=shown, field=f"{name}.llm"
        )
    for flag in _FLAGS:
        if flag in agent and not isinstance(agent[flag], bool):
            raise CatalogError("expected true or false", file=shown, field=f"{name}.{flag}")


def _check_task(
    name: str, task: dict[str, Any], shown: str, agents: dict[str, dict[str, Any]]
) -> None:
    for field in TASK_TEXTS:
        _require_text(task, field, shown, name)
    agent = task.get("agent")
    if agent is None:
        raise CatalogError(
            "required: agentic runs each task on the agent it names",
            file=shown,
            field=f"{name}.agent",
        )
    if not isinstance(agent, str) or agent not in agents:
        raise CatalogError(
            f"unknown agent {agent!r} (agents.yaml has {_listed(agents)})",
            file=shown,
            field=f"{name}.agent",
        )
    context = task.get("context")
    if context is not None and not (
        isinstance(context, list) and all(isinstance(c, str) for c in context)
    ):
        raise CatalogError("expected a list of task names", file=shown, field=f"{name}.context")


def _check_contexts(tasks: dict[str, dict[str, Any]], shown: str) -> None:
    """Each ``context`` names a task before it, as CrewAI requires; a later one is a cycle
    when it leads back."""
    order = {name: index for index, name in enumerate(tasks)}
    for name, task in tasks.items():
        for index, other in enumerate(context_of(task) or []):
            field = f"{name}.context[{index}]"
            if other not in order:
                message = f"unknown task {other!r} (tasks.yaml has {_listed(tasks)})"
                raise CatalogError(message, file=shown, field=field)
            if order[other] < order[name]:
                continue
            loop = _path_back(tasks, other, name)
            if loop is not None:
                cycle = " -> ".join([name, *loop])
                raise CatalogError(f"context cycle: {cycle}", file=shown, field=field)
            message = (
                f"{other!r} comes after {name!r} in tasks.yaml: a task's context must be "
                "tasks before it (CrewAI refuses it too)"
            )
            raise CatalogError(message, file=shown, field=field)


def _path_back(tasks: dict[str, dict[str, Any]], start: str, goal: str) -> list[str] | None:
    """The context chain from ``start`` to ``goal`` (both included), if there is one."""
    stack = [[start]]
    seen: set[str] = set()
    while stack:
        trail = stack.pop()
        node = trail[-1]
        if node == goal:
            return trail
        if node in seen or node not in tasks:
            continue
        seen.add(node)
        stack += [[*trail, nxt] for nxt in context_of(tasks[node]) or []]
    return None


def _require_text(entry: dict[str, Any], field: str, shown: str, name: str) -> None:
    value = entry.get(field)
    if value is None:
        raise CatalogError("required field is missing", file=shown, field=f"{name}.{field}")
    if not isinstance(value, str) or not value.strip():
        raise CatalogError("expected text", file=shown, field=f"{name}.{field}")


def _listed(names: dict[str, Any]) -> str:
    return ", ".join(repr(n) for n in names)
