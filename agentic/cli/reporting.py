"""How `agentic run` and `agentic replay` wait for a run and say how it ended.

Both commands hand :func:`run_and_report` a function that starts the run and returns it
finished; the live progress goes to stdout (to stderr with ``--json``, so that stdout carries
only the document), then the outcome (or the JSON document) is printed and the exit code
returned: 0 succeeded, 1 failed, cancelled, or the store or bus failed on the way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agentic.cli._common import EXIT_FAILED, EXIT_OK, print_error

if TYPE_CHECKING:
    from agentic.contracts import RunEvent, RunRecord
    from agentic.store import RunStore

EventSink = Callable[["RunEvent"], None]
RunStarter = Callable[[EventSink, Callable[["RunRecord"], None]], "RunRecord"]
"""Runs the run to its end: ``(on_event, on_start) -> the finished record``."""


def run_and_report(start: RunStarter, store: RunStore, *, as_json: bool) -> int:
    """Run with live progress, then print the outcome; the command's exit code.

    A :class:`~agentic.errors.ConfigError` propagates (the caller exits 2); any other
    :class:`~agentic.errors.AgenticError` is one red line and exit 1.
    """
    import json

    import typer
    from rich.console import Console

    from agentic.cli.details import load_run
    from agentic.cli.progress import progress_reporter
    from agentic.cli.views import print_run_outcome, stdout_console
    from agentic.errors import AgenticError, ConfigError

    out, err = stdout_console(), Console(stderr=True)
    progress = progress_reporter(err if as_json else out)
    try:
        with progress:
            record = start(masked(progress.on_event), progress.start)
            progress.finish(record)
    except ConfigError:
        raise
    except AgenticError as exc:  # the store or the bus failed: not the user's input
        print_error(str(exc))
        return EXIT_FAILED
    if not record.is_terminal:
        return _not_finished(record)
    detail = load_run(store, record.run_id)
    if as_json:
        typer.echo(json.dumps(detail.to_json(), indent=2, ensure_ascii=False))
    else:
        print_run_outcome(out, detail, err=err)
    return EXIT_OK if record.status == "succeeded" else EXIT_FAILED


def masked(on_event: EventSink) -> EventSink:
    """``on_event`` fed events whose data has secret values masked (an in-process run's
    events never pass through the store or the bus, which mask them)."""
    from agentic import redact

    def forward(event: RunEvent) -> None:
        on_event(event.model_copy(update={"data": redact.current().data(event.data)}))

    return forward


def _not_finished(record: RunRecord) -> int:
    print_error(
        f"run {record.run_id!r} already exists and is {record.status} (another process is "
        f"running it, or it was interrupted): see `agentic show {record.run_id}`"
    )
    return EXIT_FAILED
