"""`agentic validate [PATH]`: report every problem of a catalog, or say it is fine."""

from __future__ import annotations

import typer

from agentic.cli import app
from agentic.cli._common import EXIT_USAGE, config_errors, load_settings


@app.command("validate")
@config_errors()
def validate(
    path: str | None = typer.Argument(
        None,
        help="A catalog directory or one YAML file. Default: the configured catalog roots "
        "(AGENTIC_CONFIG_DIR and AGENTIC_EXTRA_CONFIG_DIRS).",
        show_default=False,
    ),
) -> None:
    """Check catalogs and workflows; print every problem as `file: field: message`.

    A `{placeholder}` other than `{topic}` is a warning (on stderr): workflows declare no
    inputs, so only `agentic run --input name=…` fills it, and a run without it is refused.
    So is a field of the original tool that agentic accepts without effect
    (docs/compatibility.md).

    Exits 0 when everything is valid (warnings or not) and 2 when anything is not.
    """
    # Imported here: every `agentic` process (step processes too) registers this command.
    from agentic.catalog import catalog_dirs, check_path, scan_catalog
    from agentic.catalog.catalog import counted
    from agentic.preparation import unfilled_placeholders

    dirs = catalog_dirs(load_settings())
    report = scan_catalog(dirs) if path is None else check_path(path, catalog_dirs=dirs)
    for problem in report.problems:
        typer.echo(str(problem))
    warnings = [f"{w.file}: warning: {w.field}: {w.message}" for w in report.warnings]
    warnings += [
        f"{source}: warning: workflow {wf.name!r}, {gap.owner} ({gap.field}) uses "
        f"{gap.placeholders}, which only inputs fill: `agentic run` refuses it without "
        + " ".join(f"--input {name}=…" for name in gap.names)
        for source, wf in report.workflows
        for gap in unfilled_placeholders(wf, ())
    ]
    for warning in warnings:
        typer.echo(warning, err=True)
    if warnings:
        typer.echo(f"{counted(len(warnings), 'warning')}", err=True)
    if report.problems:
        count = len(report.problems)
        typer.echo(f"{counted(count, 'problem')} found", err=True)
        raise typer.Exit(EXIT_USAGE)
    typer.echo(f"{report.catalog.summary()}: OK")


@app.command("catalog")
@config_errors()
def catalog(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """List the catalog: agent providers, MCP providers and workflows, each with what it
    lacks here (the variables not set in this environment) and the file it comes from."""
    import json
    import os

    from agentic.catalog import catalog_dirs, scan_catalog
    from agentic.catalog.catalog import counted
    from agentic.catalog.env import missing_env
    from agentic.contracts import AgentProvider, MCPProvider

    report = scan_catalog(catalog_dirs(load_settings()))
    found = report.catalog
    rows: list[dict[str, object]] = []
    groups: list[tuple[str, str, dict[str, AgentProvider] | dict[str, MCPProvider]]] = [
        ("agent provider", "agent_providers", found.agent_providers),
        ("MCP provider", "mcp_providers", found.mcp_providers),
    ]
    for kind, folder, entries in groups:
        for entry_id, entry in entries.items():
            missing, any_of = missing_env(entry, os.environ)
            shown = entry.type if isinstance(entry, AgentProvider) else entry.transport
            rows.append(
                {
                    "kind": kind,
                    "id": entry_id,
                    "type": shown,
                    "missing": missing,
                    "missing_any_of": any_of,
                    "source": found.source_of(folder, entry_id),
                }
            )
    for name, definition in found.workflows.items():
        rows.append(
            {
                "kind": "workflow",
                "id": name,
                "type": counted(len(definition.workflow.tasks), "task"),
                "missing": [],
                "missing_any_of": [],
                "source": found.source_of("workflows", name),
            }
        )
    if as_json:
        typer.echo(json.dumps({"entries": rows, "problems": len(report.problems)}, indent=2))
        return
    for row in rows:
        state = "ready"
        if row["missing"]:
            state = "needs " + ", ".join(row["missing"])  # type: ignore[arg-type]
        elif row["missing_any_of"]:
            group: list[str] = row["missing_any_of"]  # type: ignore[assignment]
            state = ("needs one of " if len(group) > 1 else "needs ") + ", ".join(group)
        typer.echo(f"{row['kind']:<15} {row['id']:<24} {row['type']!s:<14} {state}")
    if report.problems:
        count = len(report.problems)
        typer.echo(f"{counted(count, 'problem')}: run `agentic validate`", err=True)


@app.command("init")
@config_errors()
def init(
    directory: str = typer.Argument("agentic-config", help="Where to write the catalog."),
) -> None:
    """Write a starter catalog (two offline agents and a workflow) that validates and runs
    without an API key; never overwrites a file."""
    from importlib.resources import files
    from pathlib import Path

    from agentic.errors import ConfigError

    target = Path(directory)
    starter = files("agentic") / "starter"
    written = []
    for folder in ("agent_providers", "mcp_providers", "workflows"):
        for item in sorted((starter / folder).iterdir(), key=lambda i: i.name):
            path = target / folder / item.name
            if path.exists():
                raise ConfigError(f"{path} exists: choose an empty directory")
            written.append((path, item.read_text(encoding="utf-8")))
    for path, text in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote a starter catalog to {target} ({len(written)} files). Next:")
    typer.echo(f"  export AGENTIC_CONFIG_DIR={target}")
    typer.echo('  agentic validate && agentic run hello --topic "your topic"')
