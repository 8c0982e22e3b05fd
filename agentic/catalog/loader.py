"""Loading catalog roots and validating them, reporting every problem at once.

A catalog root holds ``agent_providers/*.yaml``, ``mcp_providers/*.yaml``,
``tools/*.yaml``, ``guardrails/*.yaml`` and ``workflows/*.yaml`` (``.yml`` too), one mapping
per file. Ids are unique within a root;
a later root overrides an earlier root's ids (that is how ``extra_config_dirs`` work).
:func:`load_catalog` succeeds exactly when :func:`validate_path` finds no problem.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentic.catalog.catalog import Catalog, counted
from agentic.catalog.files import (
    KINDS,
    Problem,
    entry_id,
    id_field,
    parse_entry,
    raw_id,
    read_yaml,
)
from agentic.catalog.resolve import resolution_issues
from agentic.contracts import WorkflowConfig, WorkflowDefinition
from agentic.errors import CatalogError
from agentic.settings import Settings


@dataclass(frozen=True)
class KindDir:
    """A folder of one kind's files (not a catalog root): the original tool's extra folders
    (``AGENTIC_EXTRA_AGENT_PROVIDERS_CATALOG_DIRS``, ``AGENTIC_EXTRA_MCP_PROVIDERS_PATH``)."""

    path: str
    kind: str

    def __str__(self) -> str:
        return self.path


PathLike = str | Path | KindDir

logger = logging.getLogger(__name__)


@dataclass
class CatalogReport:
    """What a validation found: the catalog it could load and every problem."""

    catalog: Catalog
    problems: list[Problem] = field(default_factory=list)
    workflows: list[tuple[str, WorkflowConfig]] = field(default_factory=list)
    """The workflows that resolved without a problem, each with its file."""
    warnings: list[Problem] = field(default_factory=list)
    """Fields accepted without effect (the original tool's), each naming its file."""

    @property
    def ok(self) -> bool:
        return not self.problems


def catalog_dirs(settings: Settings) -> list[PathLike]:
    """The catalog roots of ``settings``: ``config_dir`` then ``extra_config_dirs``, then the
    original tool's extra folders of agent and MCP providers (:class:`KindDir`)."""
    return [
        settings.config_dir,
        *settings.extra_config_dirs,
        *(KindDir(d, "agent_providers") for d in settings.extra_agent_providers_catalog_dirs),
        *(KindDir(d, "mcp_providers") for d in settings.extra_mcp_providers_path),
    ]


def load_catalog(
    dirs: Sequence[PathLike],
    *,
    env: Mapping[str, str] | None = None,
    missing_ok: bool = False,
    kinds: Sequence[str] = KINDS,
) -> Catalog:
    """Load catalog roots.

    Args:
        dirs: Catalog roots, later ones overriding earlier ids.
        env: Environment for ``required_env`` gating (default: the process environment).
        missing_ok: Skip roots that do not exist instead of failing (for a default root).
        kinds: Only these kinds (a step process reads only ``tools`` and ``guardrails``).

    Fields accepted without effect are logged as warnings.

    Raises:
        CatalogError: the first problem, naming its file and field, and how many more.
    """
    report = scan_catalog(dirs, env=env, missing_ok=missing_ok, kinds=kinds)
    for warning in report.warnings:
        logger.warning("%s", warning)
    if report.problems:
        first = report.problems[0]
        more = len(report.problems) - 1
        suffix = f" (and {counted(more, 'more problem')}: run `agentic validate`)" if more else ""
        raise CatalogError(first.message + suffix, file=first.file, field=first.field)
    return report.catalog


def validate_path(
    path: PathLike, *, catalog_dirs: Sequence[PathLike] | None = None
) -> list[Problem]:
    """Every problem of a catalog root or of one YAML file (empty when all is well)."""
    return check_path(path, catalog_dirs=catalog_dirs).problems


def check_path(path: PathLike, *, catalog_dirs: Sequence[PathLike] | None = None) -> CatalogReport:
    """Validate a catalog root, or one file.

    A file inside ``<root>/<kind>/`` is checked against its own root; any other file must be
    a workflow and is checked against ``catalog_dirs``.
    """
    target = Path(str(path))
    if target.is_dir():
        return scan_catalog([target])
    if not target.is_file():
        return CatalogReport(Catalog(), [Problem(str(path), None, "no such file or directory")])
    if target.suffix not in (".yaml", ".yml"):
        return CatalogReport(Catalog(), [Problem(str(path), None, "not a .yaml or .yml file")])
    if target.parent.name in KINDS:
        report = scan_catalog([target.parent.parent])
        report.problems = [p for p in report.problems if Path(p.file) == target]
        report.warnings = [w for w in report.warnings if Path(w.file) == target]
        report.workflows = [(f, wf) for f, wf in report.workflows if Path(f) == target]
        return report
    return _check_workflow_file(target, str(path), catalog_dirs or [])


def scan_catalog(
    dirs: Sequence[PathLike],
    *,
    env: Mapping[str, str] | None = None,
    missing_ok: bool = False,
    kinds: Sequence[str] = KINDS,
) -> CatalogReport:
    """Load what can be loaded from ``dirs`` (only ``kinds``) and collect every problem."""
    catalog = Catalog(env=env, roots=[str(d) for d in dirs])
    problems: list[Problem] = []
    warnings: list[Problem] = []
    broken: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for where in dirs:
        root = Path(str(where))
        if not root.is_dir():
            if not missing_ok:
                problems.append(Problem(str(root), None, "catalog directory does not exist"))
            continue
        for kind, folder in _folders(where, root, kinds):
            _load_kind(folder, kind, catalog, (problems, warnings), broken[kind])
    known = set(catalog.agent_providers) | broken["agent_providers"]
    for name, provider in catalog.agent_providers.items():
        source = catalog.source_of("agent_providers", name) or name
        for index, fallback in enumerate(provider.fallback):
            if fallback not in known:
                message = f"falls back to unknown agent provider {fallback!r}"
                problems.append(Problem(source, f"fallback[{index}]", message))
    resolved: list[tuple[str, WorkflowConfig]] = []
    for name, definition in catalog.workflows.items():
        source = catalog.source_of("workflows", name) or name
        wf, issues = resolution_issues(definition, catalog, broken=broken)
        problems += [Problem(source, f, m) for f, m in issues]
        if not issues:
            resolved.append((source, wf))
    return CatalogReport(catalog, problems, resolved, warnings)


def _folders(where: PathLike, root: Path, kinds: Sequence[str]) -> list[tuple[str, Path]]:
    """The ``(kind, folder)`` pairs of one catalog root (or one kind's folder) to read."""
    if isinstance(where, KindDir):
        return [(where.kind, root)] if where.kind in kinds else []
    return [(kind, root / kind) for kind in kinds]


def _load_kind(
    folder: Path,
    kind: str,
    catalog: Catalog,
    found: tuple[list[Problem], list[Problem]],
    broken: set[str],
) -> None:
    """Load ``folder``'s files of ``kind``; ``found`` gets (problems, warnings)."""
    if not folder.is_dir():
        return
    problems, warnings = found
    seen: dict[str, str] = {}
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    for path in files:
        shown = str(path)
        try:
            data = read_yaml(path, shown)
        except CatalogError as exc:
            problems.append(Problem.from_error(exc))
            broken.add(path.stem)  # files are named after their id by convention
            continue
        entry, issues = parse_entry(kind, data, shown, warnings)
        if entry is None:
            problems += issues
            broken.add(raw_id(kind, data) or path.stem)
            continue
        eid = entry_id(entry)
        if eid in seen:
            message = f"duplicate id {eid!r}: also defined in {seen[eid]}"
            problems.append(Problem(shown, id_field(kind), message))
            continue
        seen[eid] = shown
        catalog.add(kind, eid, entry, shown)


def _check_workflow_file(path: Path, shown: str, dirs: Sequence[PathLike]) -> CatalogReport:
    report = scan_catalog(dirs, missing_ok=True)
    # The catalog's own problems and workflows are not this file's; only its references
    # matter here.
    report.problems, report.workflows, report.warnings = [], [], []
    try:
        data = read_yaml(path, shown)
    except CatalogError as exc:
        report.problems.append(Problem.from_error(exc))
        return report
    if not (isinstance(data, dict) and "workflow" in data):
        report.problems.append(
            Problem(
                shown,
                None,
                "expected a workflow file (a mapping with a 'workflow' key); agent and MCP "
                "providers live under <catalog>/agent_providers/ and <catalog>/mcp_providers/",
            )
        )
        return report
    definition, found = parse_entry("workflows", data, shown, report.warnings)
    report.problems += found
    if isinstance(definition, WorkflowDefinition):
        wf, issues = resolution_issues(definition, report.catalog)
        report.problems += [Problem(shown, f, m) for f, m in issues]
        if not report.problems:
            report.workflows.append((shown, wf))
    return report
