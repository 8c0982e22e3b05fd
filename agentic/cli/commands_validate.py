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

    Exits 0 when everything is valid and 2 when anything is not.
    """
    # Imported here: every `agentic` process (step processes too) registers this command.
    from agentic.catalog import catalog_dirs, check_path, scan_catalog

    dirs = catalog_dirs(load_settings())
    report = scan_catalog(dirs) if path is None else check_path(path, catalog_dirs=dirs)
    for problem in report.problems:
        typer.echo(str(problem))
    if report.problems:
        count = len(report.problems)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        raise typer.Exit(EXIT_USAGE)
    typer.echo(f"{report.catalog.summary()}: OK")
