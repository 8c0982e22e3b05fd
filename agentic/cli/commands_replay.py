"""`agentic replay RUN_ID`: a new run reusing an earlier run's results before a step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agentic.cli import app
from agentic.cli._common import ResultJsonOpt, StoreOpt, config_errors, load_settings

if TYPE_CHECKING:
    from agentic.replay import Replay
    from agentic.settings import Settings
    from agentic.store import RunStore

FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from", help="Execute from this step (default: the first step that did not succeed)."
    ),
]
BackendOpt = Annotated[
    str | None,
    typer.Option("--backend", "-b", help="Where the new run executes (default: the old run's)."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Change the workflow or inputs: tasks.ID.FIELD=V, agent_providers.ID.FIELD=V, "
        "topic=V, inputs.NAME=V; repeat it.",
    ),
]
RunIdOpt = Annotated[str | None, typer.Option("--run-id", help="The new run's id.")]


@app.command("replay")
@config_errors()
def replay(
    run_id: Annotated[str, typer.Argument(help="The run to replay.", show_default=False)],
    from_step: FromOpt = None,
    backend: BackendOpt = None,
    sets: SetOpt = None,
    store: StoreOpt = None,
    new_run_id: RunIdOpt = None,
    as_json: ResultJsonOpt = False,
) -> None:
    """Re-run a run from a step: earlier results are reused without calling any model.

    Exit codes: 0 the new run succeeded; 1 it failed; 2 unknown run or step, bad --set.
    """
    from agentic.replay import prepare_replay
    from agentic.store import open_run_store

    settings = load_settings(**({"run_store_url": store} if store else {}))
    run_store = open_run_store(settings)
    prepared = prepare_replay(
        run_store,
        run_id,
        settings=settings,
        from_step=from_step,
        backend=backend,
        sets=sets or [],
        new_id=new_run_id,
    )
    from agentic.cli.stack import stack_for

    # Without AGENTIC_NATS_URL, `--backend nats` brings its own nats-server, coordinator, worker.
    with stack_for(settings, prepared.record.backend) as settings:
        code = _replay_and_report(prepared, run_store, settings, as_json=as_json)
    raise typer.Exit(code)


def _replay_and_report(
    prepared: Replay, store: RunStore, settings: Settings, *, as_json: bool
) -> int:
    from rich.console import Console

    from agentic.cli.reporting import run_and_report
    from agentic.cli.views import stdout_console
    from agentic.replay import run_replay

    reused = ", ".join(prepared.reused) or "nothing"
    info = Console(stderr=True) if as_json else stdout_console()
    info.print(
        f"replaying {prepared.source.run_id} as {prepared.record.run_id} from step "
        f"{prepared.from_step!r} on {prepared.record.backend}: reusing {reused}",
        markup=False,
        highlight=False,
    )
    return run_and_report(
        lambda on_event, on_start: run_replay(
            prepared, store, settings, on_event, on_start=on_start
        ),
        store,
        as_json=as_json,
    )
