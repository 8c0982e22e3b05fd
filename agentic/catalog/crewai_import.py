"""A CrewAI project as agentic catalogs: ``agentic import crewai PATH --out DIR``.

Each agent of ``agents.yaml`` becomes ``DIR/agent_providers/<agent>.yaml`` and the tasks of
``tasks.yaml`` one workflow, ``DIR/workflows/<project>.yaml``, with the tasks in the file's
order. What carries over (docs/compatibility.md, "CrewAI projects"):

* ``role``, ``goal``, ``backstory``, ``verbose``, ``allow_delegation`` as they are;
* ``llm`` as a provider ``type`` and ``model`` where the string says which
  (:func:`map_llm`); otherwise nothing is written unless ``--llm`` names the model or
  ``--offline`` asks for ``scripted`` placeholders;
* ``description``, ``expected_output``, ``agent`` (``agent_provider_id``) and ``context``
  (``depends_on``) as they are, ``{placeholders}`` included (``agentic run --input`` fills
  them, as ``kickoff(inputs=...)`` does);
* a task's ``guardrail`` sentence (CrewAI's LLM guardrail) and ``guardrail_max_retries``;
* everything else (tools, callbacks, ``output_file``, ``async_execution``, ...) is one line
  of the report, naming the file, the agent or task, and the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentic.catalog.crewai_project import (
    AGENT_TEXTS,
    TASK_TEXTS,
    CrewProject,
    context_of,
)
from agentic.contracts import PLACEHOLDER, AgentProvider, WorkflowDefinition
from agentic.contracts.base import first_error
from agentic.errors import CatalogError, ConfigError
from agentic.ids import is_safe_id

CARRIED_AGENT_FIELDS = frozenset({*AGENT_TEXTS, "llm", "verbose", "allow_delegation"})
CARRIED_TASK_FIELDS = frozenset({*TASK_TEXTS, "agent", "context", "guardrail_max_retries"})

_CODE = "a catalog never names Python code to import"
_TOOLS = (
    "a CrewAI tool is Python in crew.py, which the import cannot read: register it as "
    "tools/<id>.yaml (python: package.module:name, or crewai_tools: ClassName) and name "
    "it in the workflow's or the task's tools: [<id>] (docs/runtime.md, 'Python tools')"
)
_STRUCTURED = (
    "its Pydantic class is Python in crew.py, which the import cannot read: give the task "
    "output_schema: <the class's JSON Schema> (Model.model_json_schema()) and its answer is "
    "validated JSON (docs/runtime.md, 'Structured output')"
)
_AGENT_REASONS = {
    "tools": _TOOLS,
    "function_calling_llm": "an agent provider has one model",
    "max_rpm": "the closest is the provider's limits.requests_per_minute",
    "max_execution_time": "the closest is timeout_s on its tasks",
    "max_retry_limit": "the closest is retries on its tasks",
    "step_callback": _CODE,
    "cache_handler": _CODE,
    "callbacks": _CODE,
    "guardrail": "guardrails are not supported yet",
}
_TASK_REASONS = {
    "output_file": "the output is kept in the run store (agentic show RUN_ID), not written "
    "to a file",
    "async_execution": "with depends_on, tasks that do not depend on each other run in "
    "parallel anyway",
    "human_input": "agentic runs without a person in the loop",
    "tools": _TOOLS,
    "output_json": _STRUCTURED,
    "output_pydantic": _STRUCTURED,
    "guardrail": "a guardrail function is Python in crew.py: register it as "
    "guardrails/<id>.yaml and write guardrail: {registered: <id>} on the task (a sentence "
    "is carried over as it is)",
    "callback": _CODE,
    "callbacks": _CODE,
    "name": "the task's id is its name in tasks.yaml",
}
_OTHER = "agentic has no such setting"

_OPENAI_BARE = re.compile(r"(gpt-|chatgpt-|o[134](-|$))")
_PROVIDER_PREFIX = re.compile(r"[a-z][a-z0-9_-]*")
_NATIVE = {
    "openai": "openai",
    "anthropic": "anthropic",
    "ollama": "ollama",
    "ollama_chat": "ollama",
}
_CREWAI_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")
"""What CrewAI fills from ``kickoff(inputs=...)``: hyphens too, which agentic does not."""


def map_llm(llm: str) -> tuple[str, str] | None:
    """The provider ``(type, model)`` of a CrewAI ``llm`` string, or ``None`` when the string
    does not say which provider it is.

    ``openai/``, ``anthropic/``, ``ollama/`` (and ``ollama_chat/``) prefixes name agentic's
    types; another ``provider/model`` is LiteLLM's own string (``type: litellm``, the model
    as written); a bare ``gpt-…``/``o1``/``o3``/``o4-…`` is OpenAI's, ``claude-…``
    Anthropic's. Anything else (a bare ``llama3``, the name of an ``@llm`` method of
    ``crew.py``) is ambiguous.
    """
    text = llm.strip()
    if not text or any(c.isspace() for c in text):
        return None
    prefix, slash, rest = text.partition("/")
    if slash:
        if not rest or not _PROVIDER_PREFIX.fullmatch(prefix):
            return None
        native = _NATIVE.get(prefix)
        return (native, rest) if native else ("litellm", text)
    if _OPENAI_BARE.match(text):
        return "openai", text
    if text.startswith("claude-"):
        return "anthropic", text
    return None


@dataclass
class Conversion:
    """What a project becomes: file texts by path relative to the output folder, and the
    report (one line per field not carried over, then notes)."""

    name: str
    files: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Options:
    """``agentic import crewai``'s choices."""

    name: str | None = None
    """The workflow's name (default: the project's, made a safe id)."""
    llm: str | None = None
    """The model of agents whose ``llm`` is missing or ambiguous."""
    offline: bool = False
    """Every agent a ``scripted`` placeholder, its model written in a comment."""


def convert(project: CrewProject, options: Options | None = None) -> Conversion:
    """Convert a checked project (:func:`~agentic.catalog.crewai_project.read_project`).

    Raises:
        ConfigError: an agent whose model cannot be told (without ``--llm`` or
            ``--offline``), a bad ``--llm`` or ``--name``, or names that collide once made
            safe ids.
    """
    options = options or Options()
    name = _workflow_name(project, options.name)
    result = Conversion(name)
    agent_ids = _ids(project.agents, str(project.files.agents), result)
    task_ids = _ids(project.tasks, str(project.files.tasks), result)
    for key, agent in project.agents.items():
        provider = _provider(key, agent_ids[key], agent, project, options, result)
        result.files[f"agent_providers/{agent_ids[key]}.yaml"] = provider
    result.inputs = _inputs(project, result)
    workflow = _workflow(project, name, agent_ids, task_ids, result)
    result.files[f"workflows/{name}.yaml"] = workflow
    return result


def write_catalog(conversion: Conversion, out: Path, *, force: bool = False) -> list[Path]:
    """Write the files under ``out``; refuse to replace one unless ``force``.

    Raises:
        ConfigError: a file exists (nothing is written then), or cannot be written.
    """
    targets = [(out / relative, text) for relative, text in conversion.files.items()]
    existing = [path for path, _ in targets if path.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ConfigError(f"{existing[0]} exists{more}: pass --force to overwrite")
    try:
        for path, text in targets:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the catalog under {out}: {exc}") from exc
    return [path for path, _ in targets]


def _workflow_name(project: CrewProject, given: str | None) -> str:
    if given is not None:
        if not is_safe_id(given):
            raise ConfigError(f"--name {given!r} is not a safe id (letters, digits, _ . -)")
        return given
    name = _safe_id(project.files.project_name)
    if not name:
        raise ConfigError(
            f"cannot name the workflow after {project.files.project_name!r}: pass --name"
        )
    return name


def _ids(entries: dict[str, Any], shown: str, result: Conversion) -> dict[str, str]:
    """Each name as a safe id (a CrewAI name is a Python identifier, which nearly always is)."""
    ids: dict[str, str] = {}
    taken: dict[str, str] = {}
    for key in entries:
        safe = _safe_id(key)
        if not safe or safe in taken:
            clash = f": so is {taken[safe]!r}" if safe in taken else ""
            message = f"cannot become an agentic id{clash}; rename it"
            raise CatalogError(message, file=shown, field=key)
        if safe != key:
            result.notes.append(f"{shown}: {key}: named {safe!r} (ids are letters, digits, _ . -)")
        ids[key], taken[safe] = safe, key
    return ids


def _safe_id(raw: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)
    text = re.sub(r"\.{2,}", ".", text).strip("_.-")[:128]
    return text if is_safe_id(text) else ""


def _provider(
    key: str,
    pid: str,
    agent: dict[str, Any],
    project: CrewProject,
    options: Options,
    result: Conversion,
) -> str:
    shown = str(project.files.agents)
    model, header = _model_of(key, agent, shown, options, result)
    data: dict[str, Any] = {"id": pid}
    if options.offline or model is None:
        data["type"] = "scripted"
    else:
        data["type"], data["model"] = model
    data.update({text: _text(agent[text]) for text in AGENT_TEXTS})
    data.update({flag: agent[flag] for flag in ("verbose", "allow_delegation") if flag in agent})
    if data["type"] == "scripted":
        reply = "{step_id}: an offline placeholder answer from the " + pid + " agent."
        data["script"] = {"replies": [reply]}
    _check(AgentProvider, data, shown, key)
    for extra in (k for k in agent if k not in CARRIED_AGENT_FIELDS):
        reason = _AGENT_REASONS.get(extra, _OTHER)
        result.dropped.append(f"{shown}: {key}.{extra}: not carried over: {reason}")
    intro = [f"Agent {key!r} of {shown},", "imported by `agentic import crewai`."]
    return _yaml([*intro, *header], data)


def _model_of(
    key: str, agent: dict[str, Any], shown: str, options: Options, result: Conversion
) -> tuple[tuple[str, str] | None, list[str]]:
    """The ``(type, model)`` of an agent (``None``: none, offline) and the lines of its
    file's header that say where it comes from."""
    llm: str | None = agent.get("llm")
    mapped = map_llm(llm) if llm is not None else None
    where = f"{shown}: {key}.llm"
    if mapped is None and options.llm is not None:
        mapped = _given_llm(options.llm)
        found = "not set" if llm is None else f"{llm!r} names no provider"
        result.notes.append(f"{where}: {found}: uses --llm {options.llm}")
        llm = options.llm
    if options.offline:
        return mapped, _offline_header(llm, mapped)
    if mapped is None:
        raise CatalogError(_no_model(llm), file=shown, field=f"{key}.llm")
    if mapped[0] == "litellm":
        result.notes.append(
            f"{where}: {llm} runs through LiteLLM (type litellm): pip install "
            "'crewai[litellm]' and set that provider's key"
        )
    return mapped, [f"llm: {llm}"]


def _given_llm(llm: str) -> tuple[str, str]:
    mapped = map_llm(llm)
    if mapped is None:
        raise ConfigError(
            f"--llm {llm!r}: name the provider, e.g. openai/gpt-4o-mini, "
            "anthropic/claude-3-5-haiku-latest or ollama/llama3.2"
        )
    return mapped


def _offline_header(llm: str | None, mapped: tuple[str, str] | None) -> list[str]:
    lines = ["--offline: a scripted placeholder that answers without a model."]
    if mapped is None:
        said = "not set" if llm is None else repr(llm)
        return [*lines, f"Its CrewAI llm ({said}) names no provider: write a type and model."]
    kind, model = mapped
    return [
        *lines,
        f"For the model of its CrewAI llm ({llm}), write `type: {kind}` and",
        f"`model: {model}`, and remove `script`.",
    ]


def _no_model(llm: str | None) -> str:
    said = (
        "not set (CrewAI took the model from the MODEL variable)"
        if llm is None
        else f"{llm!r} does not say which provider it is"
    )
    return (
        f"{said}: pass --llm PROVIDER/MODEL (e.g. openai/gpt-4o-mini) for the agents "
        "without one, or --offline for scripted placeholders"
    )


def _workflow(
    project: CrewProject,
    name: str,
    agent_ids: dict[str, str],
    task_ids: dict[str, str],
    result: Conversion,
) -> str:
    shown = str(project.files.tasks)
    explicit = any(context_of(task) is not None for task in project.tasks.values())
    tasks: list[dict[str, Any]] = []
    earlier: list[str] = []
    for key, task in project.tasks.items():
        entry: dict[str, Any] = {
            "id": task_ids[key],
            "agent_provider_id": agent_ids[task["agent"]],
            **{text: _text(task[text]) for text in TASK_TEXTS},
        }
        if isinstance(task.get("guardrail"), str):  # CrewAI's LLM guardrail: a sentence
            entry["guardrail"] = task["guardrail"]
        if isinstance(task.get("guardrail_max_retries"), int):
            entry["guardrail_max_retries"] = task["guardrail_max_retries"]
        context = context_of(task)
        if explicit:
            # CrewAI: a task without `context` sees every earlier output, so it depends on
            # every earlier task; `context: []` sees none.
            deps = list(earlier) if context is None else [task_ids[c] for c in context]
            entry["depends_on"] = deps
        tasks.append(entry)
        earlier.append(task_ids[key])
        for extra in (k for k in task if k not in CARRIED_TASK_FIELDS and k not in entry):
            reason = _TASK_REASONS.get(extra, _OTHER)
            if extra == "output_file":
                reason = f"{task[extra]!r}: {reason}"
            result.dropped.append(f"{shown}: {key}.{extra}: not carried over: {reason}")
    data = {
        "workflow": {
            "name": name,
            "description": f"Imported from the CrewAI project {project.files.config_dir}.",
            "agent_providers": list(agent_ids.values()),
            "tasks": tasks,
            "task_sequence": list(earlier),
        }
    }
    _check(WorkflowDefinition, data, shown, None)
    header = [f"The crew of {project.files.config_dir},", "imported by `agentic import crewai`."]
    if result.dropped:
        header += ["Not carried over (agents and tasks):"]
        header += [
            "  " + line.split(": ", 1)[1].replace(": not carried over: ", ": ")
            for line in result.dropped
        ]
    return _yaml(header, data)


def _inputs(project: CrewProject, result: Conversion) -> list[str]:
    """The ``{placeholders}`` of every text, in order of appearance; a CrewAI one agentic
    does not fill (with a hyphen) is reported."""
    names: dict[str, None] = {}
    sources = [
        (str(project.files.agents), project.agents, AGENT_TEXTS),
        (str(project.files.tasks), project.tasks, TASK_TEXTS),
    ]
    for shown, entries, fields in sources:
        for key, entry in entries.items():
            for field_name in fields:
                text = _text(entry[field_name])
                names.update(dict.fromkeys(PLACEHOLDER.findall(text)))
                for crewai_only in _CREWAI_PLACEHOLDER.findall(text):
                    if "-" in crewai_only:
                        result.dropped.append(
                            f"{shown}: {key}.{field_name}: {{{crewai_only}}} not carried "
                            "over: agentic fills {names} of letters, digits and _ only"
                        )
    return list(names)


def _check(model: Any, data: dict[str, Any], shown: str, key: str | None) -> None:
    """What is written loads: a failure here is a text agentic cannot hold."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise CatalogError(
            f"cannot be converted: {first_error(exc)}", file=shown, field=key
        ) from exc


def _text(value: str) -> str:
    """A CrewAI text (often a folded ``>`` block ending in a newline), trimmed."""
    return value.strip()


class _Dumper(yaml.SafeDumper):
    """Multi-line texts as ``|`` blocks, as a person would write them."""


def _represent_text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_text)


def _yaml(header: list[str], data: dict[str, Any]) -> str:
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return comments + body
