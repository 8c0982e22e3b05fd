"""The `agentic` command line: the composition root. Each command group lives in its own
module and registers itself on :data:`app`; commands are thin calls into the library."""

from __future__ import annotations

import os
from typing import Annotated

import typer

app = typer.Typer(
    name="agentic",
    help="Durable, replayable CrewAI agent workflows.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"agentic {version('agentic')}")
        raise typer.Exit()


@app.callback()
def _root(
    _: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Durable, replayable CrewAI agent workflows."""
    # A callback keeps `agentic <command>` a command group even while only one command
    # is registered (typer would otherwise run that command without its name).


def _register() -> None:
    # Each module adds its commands to `app` on import. Keep one import per command group.
    from agentic.cli import (
        commands_console,  # noqa: F401
        commands_credentials,  # noqa: F401
        commands_import,  # noqa: F401
        commands_inspect,  # noqa: F401
        commands_knowledge,  # noqa: F401
        commands_replay,  # noqa: F401
        commands_run,  # noqa: F401
        commands_scaler,  # noqa: F401
        commands_services,  # noqa: F401
        commands_stack,  # noqa: F401
        commands_step,  # noqa: F401
        commands_store,  # noqa: F401
        commands_validate,  # noqa: F401
    )


def main() -> None:
    """Console-script entry point."""
    _secrets_masked()
    _register()
    try:
        app()
    except SystemExit as done:
        _exit_without_abandoned_threads(done.code)
        raise


def _exit_without_abandoned_threads(code: int | str | None) -> None:
    """Exit now if a thread this command gave up on still runs, instead of waiting for it.

    An interrupted ``inprocess`` run leaves CrewAI's model call on an executor thread that
    nothing can stop (a server that never answers holds it for the SDK's 600 s), and the
    interpreter joins such threads before it exits. The run is recorded and reported by
    now: run the exit handlers and leave. Only after an interrupt: otherwise every thread
    left is idle and ends with the interpreter.
    """
    import atexit
    import sys
    import threading

    from agentic.recording.cancel import INTERRUPTED

    if not INTERRUPTED.is_set():
        return
    waiting = [
        t
        for t in threading.enumerate()
        if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if not waiting:
        return
    atexit._run_exitfuncs()  # logging, scratch folders: all but the thread joins
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _secrets_masked() -> None:
    """Mask this process's credential-like variables in everything it logs or prints.

    Log records go through the one handler of :func:`agentic.logs.configure`, at
    ``AGENTIC_LOG_LEVEL`` in ``AGENTIC_LOG_FORMAT``; a service command reconfigures it.
    Invalid settings fall back to the defaults here: the command reports them.
    """
    from agentic import logs, redact, tracing

    redact.protect_environment()
    redact.mask_standard_streams()  # what CrewAI prints, past every log handler
    logs.configure_from_settings()
    tracing.configure(tracing.CLI)  # services and step processes rename theirs
