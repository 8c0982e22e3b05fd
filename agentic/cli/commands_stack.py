"""`agentic up` (a local NATS stack in the foreground) and `agentic cancel RUN_ID`."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from agentic.cli import app
from agentic.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    config_errors,
    load_settings,
    print_error,
)

if TYPE_CHECKING:
    from agentic.cli.stack import ProcessStack

DEFAULT_DATA_DIR = ".agentic/nats"

Workers = Annotated[int, typer.Option("--workers", "-w", min=0, help="Worker processes.")]
Concurrency = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, help="Steps each worker runs at once.")
]
Port = Annotated[
    int, typer.Option("--port", "-p", min=0, max=65535, help="NATS client port (0: any free).")
]
DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help=f"JetStream directory, kept across restarts (default: AGENTIC_NATS_DATA_DIR "
        f"or {DEFAULT_DATA_DIR}).",
    ),
]


@app.command("up")
@config_errors()
def up(
    workers: Workers = 1,
    concurrency: Concurrency = 1,
    port: Port = 4222,
    data_dir: DataDir = None,
) -> None:
    """Run nats-server, a coordinator and workers here, in the foreground.

    Prints the NATS URL to submit runs to; Ctrl-C (or SIGTERM) stops everything, workers
    first so running steps finish. Exit codes: 0 stopped on request; 1 a process of the
    stack failed.
    """
    from agentic.cli.stack import ProcessStack

    settings = load_settings()
    stack = ProcessStack(
        settings,
        workers=workers,
        concurrency=concurrency,
        port=port,
        data_dir=data_dir or settings.nats_data_dir or DEFAULT_DATA_DIR,
    )
    raise typer.Exit(_foreground(stack))


def _foreground(stack: ProcessStack) -> int:
    from agentic.errors import BusError

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            stack.start()
        except BusError as exc:
            print_error(str(exc))
            return EXIT_FAILED
        _announce(stack)
        while (exited := stack.exited()) is None:
            time.sleep(0.2)
        print_error(f"{exited[0]} exited with code {exited[1]}; stopping the stack")
        return EXIT_FAILED
    except KeyboardInterrupt:
        typer.echo("stopping: workers finish their steps, then the coordinator stops", err=True)
        return EXIT_OK
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the stack like Ctrl-C


def _announce(stack: ProcessStack) -> None:
    assert stack.server is not None
    pids = " ".join(str(p.pid) for n, p in stack.children.items() if n != "coordinator")
    lines = [
        f"NATS: {stack.url} (monitoring {stack.server.monitor_url}, JetStream in "
        f"{stack.server.store_dir})",
        f"coordinator pid {stack.children['coordinator'].pid}; "
        f"{stack.workers} worker(s){f' pids {pids}' if pids else ''}; "
        f"run store {_shown_store(stack.settings.run_store_url)}",
        "Submit runs from another terminal:",
        f"  AGENTIC_NATS_URL={stack.url} agentic run demo --backend nats",
        f"  AGENTIC_NATS_URL={stack.url} python scripts/submit_run.py demo topic=NATS",
        "Ready. Ctrl-C stops everything.",
    ]
    typer.echo("\n".join(lines))


def _shown_store(url: str) -> str:
    # A relative path is relative to this directory: show where it is for clients elsewhere.
    return url if "://" in url else str(Path(url).resolve())


@app.command("cancel")
@config_errors()
def cancel(
    run_id: str = typer.Argument(..., help="The run to cancel.", show_default=False),
) -> None:
    """Cancel a run of the nats backend: its running steps are stopped.

    Exit codes: 0 the coordinator cancelled it (or it had already finished); 1 the
    coordinator could not be reached or refused; 2 no such run, or bad usage.
    """
    from agentic.backends.nats import request_cancel
    from agentic.errors import BusError, ConfigError

    settings = load_settings()
    if not settings.nats_url:
        raise ConfigError(
            "agentic cancel asks the coordinator over NATS: set AGENTIC_NATS_URL "
            "(`agentic up` prints it)"
        )
    try:
        reply = request_cancel(settings, run_id)
    except BusError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_FAILED) from exc
    if reply.unknown_run:
        print_error(reply.error or f"unknown run {run_id!r}")
        raise typer.Exit(EXIT_USAGE)
    if not reply.ok:
        print_error(f"run {run_id!r} was not cancelled: {reply.error}")
        raise typer.Exit(EXIT_FAILED)
    status = reply.body.get("status")
    typer.echo(f"run {run_id}: {status}" if status else f"cancel requested for run {run_id}")
