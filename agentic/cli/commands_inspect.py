"""`agentic runs` and `agentic show RUN_ID`: what the run store knows about runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, get_args

import typer

from agentic.cli import app
from agentic.cli._common import EXIT_FAILED, StoreOpt, config_errors, load_settings, print_error

if TYPE_CHECKING:
    from agentic.contracts import RunEvent, RunRecord
    from agentic.lifecycle import Purged

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("runs")
@config_errors()
def runs(
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs in this status.")
    ] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", help="Only this workflow.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only runs created since a date, a time or an age (2h, 7d)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N runs; 0: all.")] = 20,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """List runs, newest first."""
    import json

    from agentic.cli.details import ABANDONED, list_runs, parse_since
    from agentic.cli.views import runs_table, stdout_console
    from agentic.contracts import RunStatus
    from agentic.errors import ConfigError
    from agentic.store import open_run_store

    known = [*get_args(RunStatus), ABANDONED]
    if status is not None and status not in known:
        raise ConfigError(f"--status {status!r}: expected one of {', '.join(known)}")
    settings = load_settings(**({"run_store_url": store} if store else {}))
    after = parse_since(since) if since else None
    listing = list_runs(
        open_run_store(settings), status=status, workflow=workflow, since=after, limit=limit
    )
    if as_json:
        typer.echo(json.dumps([run.to_json() for run in listing.runs], indent=2))
    elif listing.runs:
        stdout_console(pipe_width=240).print(runs_table(listing))
    else:
        filtered = status or workflow or since
        typer.echo("no runs match" if filtered else f"no runs in {settings.run_store_url} yet")


@app.command("show")
@config_errors()
def show(
    run_id: Annotated[str, typer.Argument(help="The run to show.", show_default=False)],
    output: Annotated[
        str | None, typer.Option("--output", help="Print this step's full output, nothing else.")
    ] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """A run's timeline (every attempt), outputs, errors, token usage and artifacts.

    Exits 2 when the store holds no such run (or, with --output, no such step).
    """
    import json

    from agentic.cli.details import load_run
    from agentic.cli.views import run_report, stdout_console
    from agentic.store import open_run_store

    settings = load_settings(**({"run_store_url": store} if store else {}))
    detail = load_run(open_run_store(settings), run_id)
    if output is not None:
        step = detail.step(output)
        if step.output is None:
            print_error(f"step {output!r} of run {run_id!r} has no output: it is {step.status}")
            raise typer.Exit(EXIT_FAILED)
        typer.echo(step.output)
    elif as_json:
        typer.echo(json.dumps(detail.to_json(), indent=2, ensure_ascii=False))
    else:
        stdout_console(pipe_width=120).print(run_report(detail))


@app.command("watch")
@config_errors()
def watch(
    run_id: Annotated[str, typer.Argument(help="The run to follow.", show_default=False)],
    interval: Annotated[
        float, typer.Option("--interval", min=0.1, help="Seconds between two looks.")
    ] = 0.5,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """Follow a run of any backend, started anywhere, until it ends: live progress, then
    its outcome, as `agentic run` shows them.

    Exit codes: 0 it succeeded; 1 it failed, was cancelled, or nobody drives it any more;
    2 no such run.
    """
    from agentic.cli.follow import follow
    from agentic.cli.reporting import run_and_report
    from agentic.store import open_run_store

    settings = load_settings(**({"run_store_url": store} if store else {}))
    run_store = open_run_store(settings)
    run_store.read_run(run_id)  # an unknown run: exit 2 before anything is drawn

    def start(
        on_event: Callable[[RunEvent], None], on_start: Callable[[RunRecord], None]
    ) -> RunRecord:
        return follow(run_store, run_id, on_event, on_start, interval_s=interval)

    raise typer.Exit(run_and_report(start, run_store, as_json=as_json))


@app.command("gc")
@config_errors()
def gc(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", help="Remove runs that ended longer ago than this (30d, 12h, 90m)."
        ),
    ],
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Only runs that ended so (repeat it); default: all."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Remove finished runs from the run store (and the knowledge index) and, with
    AGENTIC_NATS_URL, their events from AGENTIC_EVENTS; never a pending or running one.

    Exit codes: 0 done; 1 the store part is done but the events of some removed runs could
    not be purged (NATS unreachable or refused: they are listed); 2 bad usage or config.
    """
    import contextlib

    from agentic.catalog.catalog import counted
    from agentic.cli.details import parse_age
    from agentic.contracts import TERMINAL_STATUSES, utcnow
    from agentic.errors import ConfigError
    from agentic.knowledge import KnowledgeIndex, index_path
    from agentic.lifecycle import StreamPurge, collect
    from agentic.store import open_run_store

    statuses = set(status or TERMINAL_STATUSES)
    unknown = statuses - set(TERMINAL_STATUSES)
    if unknown:
        raise ConfigError(
            f"--status {sorted(unknown)[0]!r}: only finished runs are collected "
            f"({', '.join(sorted(TERMINAL_STATUSES))})"
        )
    settings = load_settings(**({"run_store_url": store} if store else {}))
    run_store = open_run_store(settings)
    cutoff = utcnow() - parse_age(older_than, "--older-than")
    # Connected before anything goes: a NATS setting that cannot work stops gc here (exit 2).
    bus = StreamPurge(settings) if settings.nats_url and not dry_run else None
    with KnowledgeIndex(index_path(settings, run_store)) as index, bus or contextlib.nullcontext():
        done = collect(run_store, cutoff, statuses=statuses, dry_run=dry_run, index=index)
        purged = bus.purge(done.removed) if bus is not None else None
    verb = "would remove" if dry_run else "removed"
    for record in done.removed:
        typer.echo(f"{verb} {record.run_id} ({record.status}, ended {record.finished_at})")
    typer.echo(
        f"{verb} {counted(len(done.removed), 'run')}; kept {done.kept_newer} newer and "
        f"{done.kept_unfinished} unfinished"
        + (f"; {len(done.unreadable)} unreadable left alone" if done.unreadable else "")
    )
    raise typer.Exit(
        _report_streams(purged, done.removed, dry_run=dry_run, nats_url=bool(settings.nats_url))
    )


def _report_streams(
    purged: Purged | None, removed: list[RunRecord], *, dry_run: bool, nats_url: bool
) -> int:
    """Say what `agentic gc` did to AGENTIC_EVENTS; its exit code."""
    from agentic.catalog.catalog import counted
    from agentic.cli._common import EXIT_OK
    from agentic.lifecycle import bus_runs

    if purged is None:
        typer.echo(
            f"streams: would purge the events of {counted(len(bus_runs(removed)), 'nats run')}"
            if dry_run and nats_url
            else "streams: not touched (no AGENTIC_NATS_URL: store only)"
        )
        return EXIT_OK
    if purged.no_stream:
        typer.echo("streams: the server has no AGENTIC_EVENTS, so no events to purge")
    elif purged.runs or purged.error is None:
        runs = counted(len(purged.runs), "nats run")
        typer.echo(f"streams: purged the events of {runs} from AGENTIC_EVENTS")
    if purged.error is None:
        return EXIT_OK
    print_error(
        f"{purged.error}; the events of {counted(len(purged.left), 'removed run')} stay in "
        "AGENTIC_EVENTS until its max age (AGENTIC_EVENTS_MAX_AGE_S) or byte limit drops "
        f"them: {', '.join(purged.left)}"
    )
    return EXIT_FAILED
