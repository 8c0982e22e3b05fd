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
    IsolationOption,
    config_errors,
    load_settings,
    print_error,
)

if TYPE_CHECKING:
    from agentic.cli.process_stack import ProcessStack
    from agentic.contracts import RunRecord
    from agentic.settings import Settings
    from agentic.store import RunStore

DEFAULT_DATA_DIR = ".agentic/nats"

Workers = Annotated[int, typer.Option("--workers", "-w", min=0, help="Worker processes.")]
Concurrency = Annotated[
    int, typer.Option("--concurrency", "-c", min=1, help="Steps each worker runs at once.")
]
Port = Annotated[
    int, typer.Option("--port", "-p", min=0, max=65535, help="NATS client port (0: any free).")
]
ClusterSize = Annotated[
    int,
    typer.Option(
        "--cluster",
        min=1,
        max=5,
        help="nats-server nodes: 3 runs a loopback cluster (ports --port, +1, +2) with "
        "3 replicas of every stream, so that killing any one node loses nothing.",
    ),
]
DataDir = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help=f"JetStream directory, kept across restarts (default: AGENTIC_NATS_DATA_DIR "
        f"or {DEFAULT_DATA_DIR}).",
    ),
]


ConsolePort = Annotated[
    int | None,
    typer.Option(
        "--console-port",
        min=0,
        max=65535,
        help="Port of the web console on 127.0.0.1 (`agentic console`): default 8765, or a "
        "free one with --port 0; 0: no console.",
        show_default=False,
    ),
]
DEFAULT_CONSOLE_PORT = 8765


@app.command("up")
@config_errors()
def up(
    workers: Workers = 1,
    concurrency: Concurrency = 1,
    port: Port = 4222,
    data_dir: DataDir = None,
    cluster: ClusterSize = 1,
    isolation: IsolationOption = None,
    console_port: ConsolePort = None,
) -> None:
    """Run nats-server, a coordinator and workers here, in the foreground.

    Prints the NATS URL to submit runs to; Ctrl-C (or SIGTERM) stops everything, workers
    first so running steps finish. Exit codes: 0 stopped on request; 1 a process of the
    stack failed.
    """
    from agentic.cli.process_stack import ProcessStack, free_port

    settings = load_settings()
    if console_port is None:
        console_port = DEFAULT_CONSOLE_PORT if port else free_port()
    stack = ProcessStack(
        settings,
        workers=workers,
        concurrency=concurrency,
        port=port,
        data_dir=data_dir or settings.nats_data_dir or DEFAULT_DATA_DIR,
        cluster=cluster,
        isolation=isolation.value if isolation is not None else None,
        console_port=console_port or None,
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
    replicas = f"; every stream on all {stack.cluster} nodes" if stack.cluster > 1 else ""
    lines = [
        f"NATS: {stack.url} (monitoring {', '.join(stack.server.monitor_urls)}, JetStream in "
        f"{stack.server.store_dir}{replicas})",
        f"coordinator pid {stack.children['coordinator'].pid}; "
        f"{stack.workers} worker(s){f' pids {pids}' if pids else ''}; "
        f"run store {_shown_store(stack.settings.run_store_url)}",
        f"Your client credential: {stack.client_credential} (readable by you alone; "
        "clients of this URL use it, nobody else gets in)",
        *([f"Console: {stack.console_url}"] if stack.console_url else []),
        *(
            [f"Metrics: {', '.join(f'{n} :{p}' for n, p in stack.metrics_ports.items())}"]
            if stack.metrics_ports
            else []
        ),
        "Submit runs from another terminal:",
        f"  AGENTIC_NATS_URL={stack.url} agentic run demo --backend nats",
        f"  AGENTIC_NATS_URL={stack.url} python scripts/submit_run.py demo topic=NATS",
        "Ready. Ctrl-C stops everything.",
    ]
    typer.echo("\n".join(lines))


def _shown_store(url: str) -> str:
    # A relative path is relative to this directory: show where it is for clients elsewhere.
    return url if "://" in url else str(Path(url).resolve())


CancelWait = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0,
        help="Seconds to wait for a run driven by a local process to stop (0: do not wait).",
    ),
]


@app.command("cancel")
@config_errors()
def cancel(
    run_id: str = typer.Argument(..., help="The run to cancel.", show_default=False),
    wait_s: CancelWait = 15.0,
) -> None:
    """Cancel a run: its running steps are stopped and it ends ``cancelled``.

    A ``nats`` run is cancelled by the coordinator (asked over NATS). A run of another
    backend is driven by the process that started it (``agentic run``): the request is
    written to the run store (``cancel.json``) and that process stops the run within about
    a second.

    Exit codes: 0 the run is cancelled (or had already finished); 1 it could not be
    cancelled (no coordinator, or the process running it did not stop within --wait);
    2 no such run, or bad usage.
    """
    from agentic.errors import ConfigError, UnknownRunError
    from agentic.store import open_run_store

    settings = load_settings()
    store = open_run_store(settings)
    try:
        record = store.read_run(run_id)
    except UnknownRunError as exc:
        if not settings.nats_url:  # the coordinator may use a store this client cannot see
            raise ConfigError(
                f"{exc}; to cancel a run of the nats backend, set AGENTIC_NATS_URL "
                "(`agentic up` prints it)"
            ) from exc
        record = None
    if record is not None and record.backend != "nats":
        _cancel_local(store, record, wait_s)
        return
    _cancel_on_nats(settings, run_id)


def _cancel_local(store: RunStore, record: RunRecord, wait_s: float) -> None:
    """Ask the process driving a local backend's run to cancel it, through the store."""
    from agentic.recording.cancel import cancel_document
    from agentic.recording.journal import abandoned

    run_id = record.run_id
    if record.is_terminal:
        typer.echo(f"run {run_id}: {record.status}")
        return
    store.request_cancel(run_id, cancel_document("cancelled with agentic cancel"))
    if abandoned(record) and record.driver is not None:
        print_error(
            f"run {run_id!r} is abandoned: the process that drove it (pid "
            f"{record.driver.pid} on {record.driver.host}) is gone, so nobody can stop it; "
            f"`agentic replay {run_id}` resumes it"
        )
        raise typer.Exit(EXIT_FAILED)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.2)
        record = store.read_run(run_id)
        if record.is_terminal:
            typer.echo(f"run {run_id}: {record.status}")
            return
    if wait_s == 0:
        typer.echo(f"cancel requested for run {run_id}")
        return
    print_error(
        f"cancel requested for run {run_id!r}, but it is still {record.status} after "
        f"{wait_s:g} s: is the process running it (backend {record.backend}) still alive?"
    )
    raise typer.Exit(EXIT_FAILED)


def _cancel_on_nats(settings: Settings, run_id: str) -> None:
    from agentic.backends.nats import request_cancel
    from agentic.errors import BusError, ConfigError

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
