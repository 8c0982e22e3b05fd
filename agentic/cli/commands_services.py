"""`agentic coordinator` and `agentic worker`: the long-running services, one process each.

Both run until SIGTERM or Ctrl-C, which drains them gracefully; `--check` instead prints
what keeps the service from working and exits 0 (healthy) or 1, for Kubernetes probes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import typer

from agentic import tracing
from agentic.cli import app
from agentic.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    IsolationOption,
    config_errors,
    load_settings,
    print_error,
)
from agentic.errors import AgenticError

if TYPE_CHECKING:
    from agentic.settings import Settings

CHECK_HELP = "Check NATS, the streams and the run store; exit 0 when healthy, else 1."


@app.command("coordinator")
@config_errors()
def coordinator(check: bool = typer.Option(False, "--check", help=CHECK_HELP)) -> None:
    """Run the coordinator: answers submits and cancels, and drives every nats run."""
    settings = load_settings()
    if check:
        raise typer.Exit(_check(settings, identity="coordinator"))
    from services.coordinator import CoordinatorService
    from services.lifecycle import configure_logging, serve

    configure_logging(settings.log_level, settings.log_format)
    tracing.configure(tracing.COORDINATOR)
    raise typer.Exit(_serve(lambda: serve(CoordinatorService(settings))))


@app.command("worker")
@config_errors()
def worker(
    pool: str = typer.Option("default", "--pool", help="Worker pool whose steps to run."),
    concurrency: int = typer.Option(1, "--concurrency", help="Steps run at once."),
    burst: bool = typer.Option(False, "--burst", help="Exit once the queue is empty."),
    check: bool = typer.Option(False, "--check", help=CHECK_HELP),
    isolation: IsolationOption = None,
) -> None:
    """Run a worker: pulls steps of one pool from NATS and runs them.

    Steps run in processes forked from a warm runtime that loaded CrewAI once: a step
    starts in milliseconds, and its timeout counts from there.
    """
    settings = load_settings()
    if check:
        raise typer.Exit(_check(settings, pool=pool, identity=f"worker-{pool}"))
    from services.lifecycle import configure_logging, serve
    from services.worker import WorkerService

    configure_logging(settings.log_level, settings.log_format)
    tracing.configure(tracing.WORKER)
    service = WorkerService(
        settings,
        pool=pool,
        concurrency=concurrency,
        burst=burst,
        isolation=isolation.value if isolation is not None else None,
    )
    raise typer.Exit(_serve(lambda: serve(service)))


def _serve(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a service; a bus or store that fails it is one red line and exit code 1."""
    from agentic.errors import ConfigError

    try:
        return asyncio.run(main())
    except ConfigError:
        raise  # exit 2, by config_errors()
    except AgenticError as exc:
        print_error(str(exc))
        return EXIT_FAILED


def _check(settings: Settings, *, pool: str | None = None, identity: str) -> int:
    from services.health import problems

    found = asyncio.run(problems(settings, pool=pool, identity=identity))
    for problem in found:
        print_error(problem)
    if found:
        return EXIT_FAILED
    typer.echo("healthy")
    return EXIT_OK
