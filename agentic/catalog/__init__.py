"""YAML catalogs: loading, ``required_env`` gating, workflow resolution, DAG checks, validation.

Typical use::

    catalog = load_catalog(catalog_dirs(settings))
    wf = load_workflow("demo", catalog)          # or a path: "config/workflows/demo.yaml"
    for problem in validate_path("config/"):     # what `agentic validate` prints
        print(problem)
"""

from agentic.catalog.catalog import Catalog
from agentic.catalog.dag import (
    check_workflow,
    task_mcp_providers,
    task_tools,
    workflow_issues,
)
from agentic.catalog.env import is_available, missing_env, require_env
from agentic.catalog.files import KINDS, Problem
from agentic.catalog.loader import (
    CatalogReport,
    KindDir,
    catalog_dirs,
    check_path,
    load_catalog,
    scan_catalog,
    validate_path,
)
from agentic.catalog.resolve import (
    load_workflow,
    require_workflow_env,
    resolution_issues,
    resolve_workflow,
)

__all__ = [
    "KINDS",
    "Catalog",
    "CatalogReport",
    "KindDir",
    "Problem",
    "catalog_dirs",
    "check_path",
    "check_workflow",
    "is_available",
    "load_catalog",
    "load_workflow",
    "missing_env",
    "require_env",
    "require_workflow_env",
    "resolution_issues",
    "resolve_workflow",
    "scan_catalog",
    "task_mcp_providers",
    "task_tools",
    "validate_path",
    "workflow_issues",
]
