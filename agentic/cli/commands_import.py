"""`agentic import crewai PATH --out DIR`: a CrewAI project's YAML as agentic catalogs."""

from __future__ import annotations

import typer

from agentic.cli import app
from agentic.cli._common import EXIT_USAGE, config_errors

import_app = typer.Typer(
    name="import",
    help="Bring what other tools wrote (docs/compatibility.md).",
    no_args_is_help=True,
)
app.add_typer(import_app)


@import_app.command("crewai")
@config_errors()
def crewai(
    path: str = typer.Argument(
        ..., help="A CrewAI project (crewai create crew) or its config folder."
    ),
    out: str = typer.Option(..., "--out", help="The catalog folder to write."),
    name: str | None = typer.Option(
        None, "--name", help="The workflow's name. Default: the project's.", show_default=False
    ),
    llm: str | None = typer.Option(
        None,
        "--llm",
        help="PROVIDER/MODEL of the agents whose llm is not set or names no provider "
        "(CrewAI then uses the MODEL variable of the project's .env).",
        show_default=False,
    ),
    offline: bool = typer.Option(
        False,
        "--offline",
        help="Write every agent as a scripted placeholder that runs without a model or key "
        "(its model in a comment), to try the workflow out.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite files that exist."),
) -> None:
    """Turn a CrewAI project's agents.yaml and tasks.yaml into agent providers and a
    workflow under DIR; print each field that could not be carried over.

    Exits 0 when the catalog is written and validates, 2 on bad input (naming the file and
    the field) or when a file exists without --force.
    """
    from pathlib import Path

    from agentic.catalog import check_path
    from agentic.catalog.catalog import counted
    from agentic.catalog.crewai_import import Options, convert, write_catalog
    from agentic.catalog.crewai_project import find_project, read_project

    project = read_project(find_project(path))
    result = convert(project, Options(name=name, llm=llm, offline=offline))
    written = write_catalog(result, Path(out), force=force)
    for line in [*result.dropped, *result.notes]:
        typer.echo(line)
    typer.echo(f"wrote {counted(len(written), 'file')} to {out}")
    report = check_path(out)
    for problem in report.problems:
        typer.echo(str(problem), err=True)
    if report.problems:
        raise typer.Exit(EXIT_USAGE)
    given = " ".join(
        "--topic …" if item == "topic" else f"--input {item}=…" for item in result.inputs
    )
    typer.echo(f"next: export AGENTIC_CONFIG_DIR={out}")
    typer.echo(f"      agentic validate && agentic run {result.name} {given}".rstrip())
