"""`agentic run`: run a workflow (or plan a goal) and wait, with live progress.

Library modules are imported inside the command: every `agentic` process registers this
module, and `agentic execute-step` (one per step) must not pay for the catalog or rich.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from agentic.cli import app
from agentic.cli._common import ResultJsonOpt, StoreOpt, config_errors, load_settings

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
RunIdOpt = Annotated[
    str | None,
    typer.Option("--run-id", help="Run id; submitting an existing id returns that run."),
]
Labels = Annotated[list[str] | None, typer.Option("--label", help="A label NAME=VALUE; repeat it.")]
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
MaxCost = Annotated[
    float | None,
    typer.Option(
        "--max-cost-usd",
        help="Fail the run once its attempts cost more than this many US dollars "
        "(overrides the workflow's max_cost_usd).",
    ),
]
NoKb = Annotated[
    bool,
    typer.Option(
        "--no-kb",
        help="With --goal: plan without the knowledge base and the providers' track records.",
    ),
]
ReviewOpt = Annotated[
    str | None,
    typer.Option(
        "--review",
        help="An agent provider that scores the answer at the end (overrides the workflow's "
        "review).",
    ),
]
MinScore = Annotated[
    float | None,
    typer.Option("--min-score", help="With --review: a score below this (0-10) fails the run."),
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
    as_json: ResultJsonOpt = False,
    detach: Detach = False,
    iterative: Iterative = False,
    max_rounds: MaxRounds = None,
    session: SessionOpt = None,
    max_cost_usd: MaxCost = None,
    no_kb: NoKb = False,
    review: ReviewOpt = None,
    min_score: MinScore = None,
) -> None:
    """Run a workflow and wait for it: live progress, then the final output.

    Exit codes: 0 succeeded; 1 failed or cancelled (Ctrl-C cancels); 2 bad usage or input.
    """
    from agentic.errors import ConfigError
    from agentic.planning import planner_options, review_options
    from agentic.preparation import build_request, load_run_catalog, parse_assignments

    settings = load_settings(**({"run_store_url": store} if store else {}))
    if (workflow is None) == (goal is None):
        raise ConfigError("give either a WORKFLOW (a catalog name or a YAML file) or --goal TEXT")
    values = parse_assignments(inputs or [], "--input")
    if topic is not None:
        values["topic"] = topic
    catalog = load_run_catalog(settings, workflow, backend)
    request = build_request(
        workflow,
        catalog,
        goal=goal,
        inputs=values,
        backend=backend,
        run_id=run_id,
        labels=parse_assignments(labels or [], "--label"),
        planner=planner_options(
            goal, iterative=iterative, max_rounds=max_rounds, session=session, knowledge=not no_kb
        ),
        max_cost_usd=max_cost_usd,
        review=review_options(review, min_score),
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
    from agentic.cli.reporting import run_and_report
    from agentic.execution import run_to_completion
    from agentic.store import open_run_store

    store = open_run_store(settings)

    def start(
        on_event: Callable[[RunEvent], None], on_start: Callable[[RunRecord], None]
    ) -> RunRecord:
        return run_to_completion(
            request, settings, on_event, catalog=catalog, store=store, on_start=on_start
        )

    return run_and_report(start, store, as_json=as_json)
