"""Export the JSON Schemas of the contracts into ``agentic/schemas/<Model>.json``.

External clients (a NATS client in another language, a UI) validate against these files,
so they are committed, and CI fails when they drift from the models::

    python -m agentic.schemas_export          # rewrite the files
    python -m agentic.schemas_export --check  # exit 1 and list the files that drifted
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import BaseModel

from agentic.contracts import (
    AgentProvider,
    GuardrailEntry,
    MCPProvider,
    RunEvent,
    RunRecord,
    RunRequest,
    StepResult,
    StepSpec,
    ToolEntry,
    WorkflowConfig,
    WorkflowDefinition,
)
from agentic.planning.plan import Plan

SCHEMA_DIR = Path(__file__).parent / "schemas"
EXPORTED: tuple[type[BaseModel], ...] = (
    StepSpec,
    StepResult,
    RunRequest,
    RunEvent,
    RunRecord,
    WorkflowConfig,
    WorkflowDefinition,
    AgentProvider,
    MCPProvider,
    ToolEntry,
    GuardrailEntry,
    Plan,
)


def schema_text(model: type[BaseModel]) -> str:
    """The committed form of a model's schema: sorted keys, indent 2, trailing newline."""
    return json.dumps(model.model_json_schema(), sort_keys=True, indent=2) + "\n"


def expected_files() -> dict[str, str]:
    """File name -> content of every exported schema."""
    return {f"{model.__name__}.json": schema_text(model) for model in EXPORTED}


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema into ``directory``; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in expected_files().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def drifted_files(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Schema files that are missing or differ from the models."""
    drifted = []
    for name, text in expected_files().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            drifted.append(path)
    return drifted


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m agentic.schemas_export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report drifted files")
    parser.add_argument("--dir", type=Path, default=SCHEMA_DIR, help="schema directory")
    args = parser.parse_args(argv)
    if args.check:
        drifted = drifted_files(args.dir)
        for path in drifted:
            print(f"{path}: out of date; run `python -m agentic.schemas_export`", file=sys.stderr)
        return 1 if drifted else 0
    for path in write_schemas(args.dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
