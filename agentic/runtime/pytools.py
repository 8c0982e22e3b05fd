"""Python tools and registered guardrails, resolved where the step runs.

A workflow, a task and a step spec name tools and registered guardrails by id only. Here, in
the process that runs the step (the ``inprocess`` backend, ``agentic execute-step``, a NATS
worker's step process), each id is looked up in THIS process's own catalog
(``tools/<id>.yaml``, ``guardrails/<id>.yaml`` under ``catalog_dirs(Settings())``) and its
target imported from installed code. An id this catalog does not hold, a module that does
not import, a class that does not build: a fatal step error naming the id and the file.

A tool is offered to the model as ``sanitize_tool_name(<tool id>)`` (``word_count``), the
name the catalog's author chose, whatever the callable or class calls itself: the same rule
as MCP tools (:func:`agentic.runtime.agents.offered_tool_name`), so prompts, scripted
replies and replays are the same on every machine and backend.

A guardrail (a registered callable, or CrewAI's LLM guardrail built from a sentence) is
counted (:func:`counted_guardrail`): once it has refused the output after every one of
CrewAI's ``guardrail_max_retries`` re-runs, it fails the attempt with a
:class:`~agentic.errors.RetryableStepFailure` of type ``GuardrailFailed`` (docs/runtime.md).
"""

from __future__ import annotations

import importlib
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from crewai import Task, TaskOutput
from crewai.tools import BaseTool
from crewai.tools.base_tool import Tool
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import Field, ValidationError, create_model

from agentic import redact
from agentic.contracts import GuardrailEntry, GuardrailRef, RegisteredGuardrail, ToolEntry
from agentic.errors import ConfigError, MissingEnvError, RetryableStepFailure
from agentic.runtime.mcp import expand_env

if TYPE_CHECKING:
    from agentic.catalog import Catalog
    from agentic.catalog.loader import PathLike

GUARDRAIL_FAILED = "GuardrailFailed"
CREWAI_TOOLS_HINT = "pip install crewai-tools"
DEFAULT_GUARDRAIL_RETRIES: int = Task.model_fields["guardrail_max_retries"].default


def local_catalog(dirs: Sequence[PathLike] | None = None) -> Catalog:
    """The tools and guardrails of this process's own catalog (``catalog_dirs(Settings())``).

    Raises:
        CatalogError: a tool or guardrail file of this catalog is invalid.
    """
    # Imported here: a step that names no tool never loads the catalog package.
    from agentic.catalog import load_catalog
    from agentic.catalog.files import CODE_KINDS
    from agentic.catalog.loader import catalog_dirs
    from agentic.settings import get_settings

    roots = list(dirs) if dirs is not None else catalog_dirs(get_settings())
    return load_catalog(roots, kinds=CODE_KINDS, missing_ok=True)


def offered_python_tool_name(tool_id: str) -> str:
    """The name an agent sees for the Python tool ``tool_id`` of the catalog."""
    return sanitize_tool_name(tool_id)


class CatalogCode:
    """Resolves tool and guardrail ids against one catalog, for one step (or one crew).

    Args:
        env: Where ``required_env`` and ``${VAR}`` placeholders are read.
        catalog: This process's catalog (default: :func:`local_catalog`, loaded on first
            use, so that a step that names no tool reads no catalog).
    """

    def __init__(self, env: Mapping[str, str], catalog: Catalog | None = None) -> None:
        self._env = env
        self._catalog = catalog

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = local_catalog()
        return self._catalog

    def tools(self, tool_ids: Sequence[str]) -> list[BaseTool]:
        """The CrewAI tools of ``tool_ids``, in order.

        Raises:
            ConfigError: an unknown id, a missing variable, a target that does not import or
                build (fatal: the same every attempt).
        """
        return [self.tool(tool_id) for tool_id in dict.fromkeys(tool_ids)]

    def tool(self, tool_id: str) -> BaseTool:
        """One tool, built from this catalog's entry (see :meth:`tools`)."""
        entry = self._entry("tools", tool_id)
        assert isinstance(entry, ToolEntry)
        where = self._where("tools", tool_id)
        redact.protect_entries([entry.model_dump(mode="json")], self._env)
        MissingEnvError.check("tool", tool_id, entry.required_env, self._env)
        args = {k: self._expanded(v, tool_id, f"args.{k}") for k, v in entry.args.items()}
        if entry.crewai_tools is not None:
            target = _crewai_tools_class(entry.crewai_tools, where)
        else:
            assert entry.python is not None  # the model guarantees exactly one target
            target = import_target(entry.python, where)
        return OfferedTool.offering(_built(target, args, entry, where), entry)

    def guardrail(self, ref: GuardrailRef | None) -> str | GuardrailCheck | None:
        """A sentence as it is (CrewAI's LLM guardrail), or the registered callable.

        Raises:
            ConfigError: an unknown id, a target that does not import or is not a callable
                of one argument.
        """
        if not isinstance(ref, RegisteredGuardrail):
            return ref
        entry = self._entry("guardrails", ref.registered)
        assert isinstance(entry, GuardrailEntry)
        where = self._where("guardrails", ref.registered)
        target = import_target(entry.python, where)
        if not callable(target) or not _takes_one_argument(target):
            raise ConfigError(
                f"{where}: python: {entry.python!r} is not a callable taking one argument "
                "(CrewAI's TaskOutput)"
            )
        return GuardrailCheck(f"guardrail {ref.registered!r}", target)

    def _entry(self, kind: str, entry_id: str) -> ToolEntry | GuardrailEntry:
        entries: Mapping[str, ToolEntry | GuardrailEntry] = getattr(self.catalog, kind)
        found = entries.get(entry_id)
        if found is None:
            what = "tool" if kind == "tools" else "guardrail"
            roots = ", ".join(self.catalog.roots) or "no catalog root"
            raise ConfigError(
                f"{what} {entry_id!r} is not in the catalog of the process that runs the step "
                f"(no {kind}/{entry_id}.yaml under {roots}): register it there"
            )
        return found

    def _where(self, kind: str, entry_id: str) -> str:
        return self.catalog.source_of(kind, entry_id) or f"{kind}/{entry_id}.yaml"

    def _expanded(self, value: Any, tool_id: str, field: str) -> Any:
        if isinstance(value, str):
            return expand_env(value, self._env, entry_id=tool_id, field=field, kind="tool")
        if isinstance(value, list):
            return [self._expanded(v, tool_id, f"{field}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self._expanded(v, tool_id, f"{field}.{k}") for k, v in value.items()}
        return value


def import_target(path: str, where: str) -> Any:
    """``package.module:name`` imported from installed code.

    Raises:
        ConfigError: the module does not import or has no such name (naming ``where``).
    """
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, SyntaxError) as exc:  # the same on every attempt
        raise ConfigError(f"{where}: python: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, name)
    except AttributeError as exc:
        raise ConfigError(f"{where}: python: module {module_name!r} has no {name!r}") from exc


def _crewai_tools_class(name: str, where: str) -> Any:
    try:
        module = importlib.import_module("crewai_tools")
    except ImportError as exc:
        raise ConfigError(
            f"{where}: crewai_tools: {name} needs the crewai_tools package, which is not "
            f"installed where this step runs ({CREWAI_TOOLS_HINT})"
        ) from exc
    found = getattr(module, name, None)
    if found is None:
        raise ConfigError(f"{where}: crewai_tools: the crewai_tools package has no {name!r}")
    return found


def _built(target: Any, args: dict[str, Any], entry: ToolEntry, where: str) -> BaseTool:
    """The tool ``target`` is: a BaseTool class built with ``args``, an instance, a function."""
    if isinstance(target, type) and issubclass(target, BaseTool):
        try:
            return target(**args)
        except (TypeError, ValueError, ValidationError) as exc:
            raise ConfigError(f"{where}: args: {target.__name__} cannot be built: {exc}") from exc
    if args:
        raise ConfigError(
            f"{where}: args: constructor arguments are for a tool class; "
            f"{entry.python or entry.crewai_tools!r} is not a crewai BaseTool subclass"
        )
    if isinstance(target, BaseTool):
        return target
    if callable(target):
        return function_tool(target, entry)
    raise ConfigError(f"{where}: python: {entry.python!r} is neither a function nor a tool")


def function_tool(func: Callable[..., Any], entry: ToolEntry) -> BaseTool:
    """A plain function as a CrewAI tool: its description from the entry (else its
    docstring), its argument schema from its signature."""
    description = entry.description or inspect.getdoc(func) or f"The {entry.id} tool."
    return Tool(
        name=offered_python_tool_name(entry.id),
        description=description,
        func=func,
        args_schema=arguments_model(func, entry.id),
    )


def arguments_model(func: Callable[..., Any], tool_id: str) -> type[Any]:
    """A pydantic model of ``func``'s named parameters (annotations resolved, ``Any`` where
    there is none; defaults kept)."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # an annotation that does not resolve: describe the argument as Any
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(func).parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    model_name = "".join(p.title() for p in sanitize_tool_name(tool_id).split("_")) + "Args"
    return create_model(model_name, **fields)


def _takes_one_argument(target: Any) -> bool:
    try:
        inspect.signature(target).bind(object())
    except (TypeError, ValueError):
        return False
    return True


class OfferedTool(BaseTool):
    """A tool of the catalog, offered under its catalog name (:func:`offered_python_tool_name`)
    with the entry's description; calls go to the tool it wraps, unchanged."""

    inner: BaseTool = Field(exclude=True)

    @classmethod
    def offering(cls, tool: BaseTool, entry: ToolEntry) -> BaseTool:
        name = offered_python_tool_name(entry.id)
        description = entry.description or tool.description
        if tool.name == name and tool.description == description:
            return tool
        return cls(
            name=name,
            description=description,
            args_schema=tool.args_schema,
            result_as_answer=tool.result_as_answer,
            inner=tool,
        )

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.run(*args, **kwargs)


class GuardrailCheck(NamedTuple):
    """A registered guardrail's callable, with how errors name it."""

    label: str
    check: Callable[[TaskOutput], Any]


def counted_guardrail(
    guardrail: str | GuardrailCheck, llm: Any, max_retries: int
) -> Callable[[TaskOutput], tuple[bool, Any]]:
    """The guardrail CrewAI calls: a sentence becomes CrewAI's own LLM guardrail, judged by
    ``llm`` (the task agent's, as ``Task(guardrail="...")`` does); either is counted.

    CrewAI calls a task's guardrail after the output and after each of its
    ``guardrail_max_retries`` re-runs, then raises a bare ``Exception``. The function
    returned counts the refusals and, at the last one, raises a ``GuardrailFailed`` step
    failure instead (retryable: another attempt starts the task afresh), naming the
    guardrail and its feedback. It is a plain function because CrewAI reads a function
    guardrail's source for its events.
    """
    if isinstance(guardrail, str):
        from crewai.tasks.llm_guardrail import LLMGuardrail

        check: Callable[[TaskOutput], Any] = LLMGuardrail(description=guardrail, llm=llm)
        label = "the LLM guardrail"
    else:
        label, check = guardrail
    refusals = 0

    def counted(output: TaskOutput) -> tuple[bool, Any]:
        nonlocal refusals
        verdict = check(output)
        if not (isinstance(verdict, tuple) and len(verdict) == 2 and isinstance(verdict[0], bool)):
            raise ConfigError(
                f"{label} returned {type(verdict).__name__}, not (passed: bool, result or feedback)"
            )
        passed, detail = verdict
        if passed:
            return True, detail
        refusals += 1
        if refusals > max_retries:
            raise RetryableStepFailure(
                f"{label} refused the output after {max_retries} "
                f"re-run{'' if max_retries == 1 else 's'}: {detail}",
                error_type=GUARDRAIL_FAILED,
            )
        return False, detail

    # CrewAI checks a guardrail's signature: one argument, and an annotated return must be
    # the tuple type itself, which a postponed annotation's string is not.
    output = inspect.Parameter("output", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    setattr(counted, "__signature__", inspect.Signature([output]))  # noqa: B010
    return counted
