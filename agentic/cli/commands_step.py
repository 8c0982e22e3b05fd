"""`agentic execute-step SPEC_URL`: run one step attempt from its spec (step processes, Jobs).

Startup time is per step, so this module imports only what a step needs, inside the
command: the spec, the store and the runtime; never the catalog, NATS or Kubernetes.
"""

from __future__ import annotations

import typer

from agentic.cli import app
from agentic.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, print_error


@app.command("execute-step")
def execute_step(
    spec_url: str = typer.Argument(
        ..., help="URL of the attempt's spec.json in the run store.", show_default=False
    ),
) -> None:
    """Run one step attempt and record its result in the run store.

    Exits 0 when the step succeeded, 1 when it failed (the failure is recorded) and 2 when
    the spec cannot be read.
    """
    from agentic.backends.local.execute import SpecUnreadable, execute_spec_url

    try:
        succeeded = execute_spec_url(spec_url).status == "succeeded"
    except SpecUnreadable as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from exc
    if not succeeded:
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(EXIT_OK)
