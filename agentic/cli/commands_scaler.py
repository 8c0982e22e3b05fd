"""`agentic scaler`: start burst worker Jobs for a pool from its queue (clusters without KEDA).

Runs until SIGTERM or Ctrl-C; `--check` instead prints what keeps the scaler from working
and exits 0 (healthy) or 1, for Kubernetes probes.
"""

from __future__ import annotations

import asyncio

import typer

from agentic.cli import app
from agentic.cli._common import EXIT_FAILED, EXIT_OK, config_errors, load_settings, print_error


@app.command("scaler")
@config_errors()
def scaler(
    pool: str | None = typer.Option(
        None, "--pool", help="Worker pool to scale (default: AGENTIC_DEFAULT_POOL)."
    ),
    check: bool = typer.Option(
        False,
        "--check",
        help="Check NATS, the pool's consumer and the Kubernetes API; exit 0 when healthy.",
    ),
) -> None:
    """Create `agentic worker --burst` Jobs from the lag of the pool's consumer."""
    settings = load_settings()
    pool = pool or settings.default_pool
    from services.scaler import ScalerService, problems

    if check:
        found = asyncio.run(problems(settings, pool=pool))
        for problem in found:
            print_error(problem)
        if found:
            raise typer.Exit(EXIT_FAILED)
        typer.echo("healthy")
        raise typer.Exit(EXIT_OK)
    from services.lifecycle import configure_logging, serve

    configure_logging(settings.log_level, settings.log_format)
    raise typer.Exit(asyncio.run(serve(ScalerService(settings, pool=pool))))
