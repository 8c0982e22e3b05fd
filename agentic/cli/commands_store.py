"""`agentic store reindex`: rebuild the run store's runs index from the runs themselves."""

from __future__ import annotations

import typer

from agentic.cli import app
from agentic.cli._common import StoreOpt, config_errors, load_settings

store_app = typer.Typer(
    name="store", help="Maintain the run store (docs/architecture.md).", no_args_is_help=True
)
app.add_typer(store_app)


@store_app.command("reindex")
@config_errors()
def reindex(store: StoreOpt = None) -> None:
    """Rebuild the runs index (what `agentic runs` and a coordinator's start-up read) from
    every run.json, e.g. after the index was deleted or damaged. Safe while runs go on."""
    import time

    from agentic.catalog.catalog import counted
    from agentic.store import open_run_store

    settings = load_settings(**({"run_store_url": store} if store else {}))
    run_store = open_run_store(settings)
    started = time.monotonic()
    count = run_store.index.rebuild()
    elapsed = time.monotonic() - started
    typer.echo(f"indexed {counted(count, 'run')} of {run_store.url} in {elapsed:.1f} s")
