"""`agentic run`: run a workflow (or plan a goal) and wait, with live progress.

Library modules are imported inside the command: every `agentic` process registers this
module, and `agentic execute-step` (one per step) must not pay for the catalog or rich.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from agentic.cli import app
from agentic.cli._common import EXIT_FAILED, EXIT_OK, config_errors, load_settings, print_error

if TYPE_CHECKING:
    from agentic.catalog import Catalog
    from agentic.contracts import RunEvent, RunRecord, RunRequest
    from agentic.settings import Settings

WorkflowArg = Annotated[
    str | None,
    typer.Argument(
        help="A catalog workflow name (demo) or a workflow YAML file.", show_default=False
    ),
]
Goal = Annotated[
    str | None, typer.Option("--goal", help="Plan a workflow for this goal from the catalogs.")
]
Topic = Annotated[str | None, typer.Option("--topic", help="Sets the input `topic`.")]
Inputs = Annotated[
    list[str] | None, typer.Option("--input", "-i", help="An input NAME=VALUE; repeat it.")
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        help="inprocess, subprocess, kubernetes or nats (default: AGENTIC_EXECUTION_BACKEND).",
    ),
]
StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Run store URL (default: AGENTIC_RUN_STORE_URL).")
]
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Run id; submitting an existing id returns that run."),
]
Labels = Annotated[list[str] | None, typer.Option("--label", help="A label NAME=VALUE; repeat it.")]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document at the end, nothing else.")
]
Iterative = Annotated[
    bool,
    typer.Option(
        "--iterative", help="With --goal: plan one step, run it, replan, until the goal is met."
    ),
]
MaxRounds = Annotated[
    int | None,
    typer.Option("--max-rounds", min=1, help="With --iterative: most rounds (default 5)."),
]
SessionOpt = Annotated[
    str | None,
    typer.Option(
        "--session", help="With --goal: the planner sees this session's earlier goals and answers."
    ),
]
Detach = Annotated[
    bool,
    typer.Option("--detach", help="Print the run id and return (a backend with workers: nats)."),
]


@app.command("run")
@config_errors()
def run(
    workflow: WorkflowArg = None,
    goal: Goal = None,
    topic: Topic = None,
    inputs: Inputs = None,
    backend: BackendOpt = None,
    store: StoreOpt = None,
    run_id: RunIdOpt = None,
    labels: Labels = None,
    as_json: JsonOpt = False,
    detach: Detach = False,
    iterative: Iterative = False,
    max_rounds: MaxRounds = None,
    session: SessionOpt = None,
) -> None:
    """Run a workflow and wait for it: live progress, then the final output.

    Exit codes: 0 succeeded; 1 failed or cancelled (Ctrl-C cancels); 2 bad usage or input.
    """
    from agentic.errors import ConfigError
    from agentic.planning import planner_options
    from agentic.preparation import build_request, load_run_catalog, parse_assignments

    settings = load_settings(**({"run_store_url": store} if store else {}))
    if (workflow is None) == (goal is None):
        raise ConfigError("give either a WORKFLOW (a catalog name or a YAML file) or --goal TEXT")
    values = parse_assignments(inputs or [], "--input")
    if topic is not None:
        values["topic"] = topic
    catalog = load_run_catalog(settings, workflow)
    request = build_request(
        workflow,
        catalog,
        goal=goal,
        inputs=values,
        backend=backend,
        run_id=run_id,
        labels=parse_assignments(labels or [], "--label"),
        planner=planner_options(goal, iterative=iterative, max_rounds=max_rounds, session=session),
    )
    from agentic.cli.stack import stack_for

    # Without AGENTIC_NATS_URL, `--backend nats` brings its own nats-server, coordinator, worker.
    with stack_for(settings, request.backend, detach=detach) as settings:
        if detach:
            _detach(request, settings, catalog, as_json=as_json)
            return
        raise typer.Exit(_run_and_report(request, settings, catalog, as_json=as_json))


def _detach(request: RunRequest, settings: Settings, catalog: Catalog, *, as_json: bool) -> None:
    import json

    from agentic.execution import submit_detached

    record = submit_detached(request, settings, catalog=catalog)
    typer.echo(json.dumps({"run_id": record.run_id}) if as_json else record.run_id)


def _run_and_report(
    request: RunRequest, settings: Settings, catalog: Catalog, *, as_json: bool
) -> int:
    import json

    from rich.console import Console

    from agentic.cli.details import load_run
    from agentic.cli.progress import progress_reporter
    from agentic.cli.views import print_run_outcome, stdout_console
    from agentic.errors import AgenticError, ConfigError
    from agentic.execution import run_to_completion
    from agentic.store import open_run_store

    out, err = stdout_console(), Console(stderr=True)
    store = open_run_store(settings)
    # With --json, stdout carries only the document: progress goes to stderr.
    progress = progress_reporter(err if as_json else out)
    try:
        with progress:
            record = run_to_completion(
                request,
                settings,
                masked(progress.on_event),
                catalog=catalog,
                store=store,
                on_start=progress.start,
            )
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


def masked(on_event: Callable[[RunEvent], None]) -> Callable[[RunEvent], None]:
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
