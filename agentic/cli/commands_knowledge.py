"""`agentic kb` (the knowledge base the planner reads) and `agentic stats` (the providers'
track records): docs/planner.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agentic.cli import app
from agentic.cli._common import StoreOpt, config_errors, load_settings

if TYPE_CHECKING:
    from agentic.knowledge import KnowledgeIndex
    from agentic.store import RunStore

kb = typer.Typer(
    name="kb",
    help="The knowledge base: earlier runs' outputs and added documents, for the planner.",
    no_args_is_help=True,
)
app.add_typer(kb)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _opened(store: str | None, *, refresh: bool = True) -> tuple[RunStore, KnowledgeIndex]:
    from agentic.knowledge import open_index
    from agentic.store import open_run_store

    settings = load_settings(**({"run_store_url": store} if store else {}))
    run_store = open_run_store(settings)
    return run_store, open_index(settings, run_store, refresh=refresh)


@kb.command("add")
@config_errors()
def kb_add(
    paths: Annotated[list[Path], typer.Argument(help="Text, Markdown or PDF files.")],
    store: StoreOpt = None,
) -> None:
    """Add documents (kept in the run store, so every machine's index holds them)."""
    from agentic.knowledge import add_document

    run_store, index = _opened(store, refresh=False)
    with index:
        for path in paths:
            doc = add_document(run_store, index, path)
            typer.echo(f"added {doc['name']} as {doc['doc_id']} ({doc['chars']:,} characters)")


@kb.command("search")
@config_errors()
def kb_search(
    query: Annotated[str, typer.Argument(help="Words to look for.")],
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most N matches.")] = 5,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """What the knowledge base holds on QUERY, most relevant first (BM25)."""
    import json

    _, index = _opened(store)
    with index:
        matches = index.search(query, limit=limit)
    if as_json:
        rows = [
            {"source": m.source, "kind": m.kind, "title": m.title, "run_id": m.run_id,
             "step_id": m.step_id, "score": m.score, "text": m.text}
            for m in matches
        ]  # fmt: skip
        typer.echo(json.dumps(rows, indent=2))
        return
    if not matches:
        typer.echo("no matches")
    for match in matches:
        text = " ".join(match.text.split())
        typer.echo(f"[{match.source}] {match.title.strip()[:80]}\n  {text[:300]}")


@kb.command("list")
@config_errors()
def kb_list(as_json: JsonOpt = False, store: StoreOpt = None) -> None:
    """The documents added, and how much the index holds."""
    import json

    from agentic.knowledge import list_documents

    run_store, index = _opened(store)
    with index:
        docs = list_documents(run_store)
        counts = {kind: index.count(kind) for kind in ("run", "step", "doc")}
    if as_json:
        typer.echo(json.dumps({"documents": docs, "passages": counts}, indent=2))
        return
    for doc in docs:
        typer.echo(f"{doc['doc_id']}  {doc['name']}  {doc['chars']:,} characters  {doc['path']}")
    typer.echo(
        f"index: {counts['run']} run outputs, {counts['step']} step outputs, "
        f"{counts['doc']} documents"
    )


@kb.command("rm")
@config_errors()
def kb_rm(
    ref: Annotated[str, typer.Argument(help="A document's id, file name or path.")],
    store: StoreOpt = None,
) -> None:
    """Remove a document from the store and the index."""
    from agentic.errors import ConfigError
    from agentic.knowledge import remove_document

    run_store, index = _opened(store, refresh=False)
    with index:
        removed = remove_document(run_store, index, ref)
    if not removed:
        raise ConfigError(f"no document {ref!r} in the knowledge base (see `agentic kb list`)")
    typer.echo(f"removed {', '.join(removed)}")


@kb.command("rebuild")
@config_errors()
def kb_rebuild(store: StoreOpt = None) -> None:
    """Build the index again from the run store."""
    from agentic.knowledge import rebuild
    from agentic.store import open_run_store

    settings = load_settings(**({"run_store_url": store} if store else {}))
    with rebuild(settings, open_run_store(settings)) as index:
        counts = {kind: index.count(kind) for kind in ("run", "step", "doc")}
    typer.echo(
        f"indexed {counts['run']} run outputs, {counts['step']} step outputs, "
        f"{counts['doc']} documents"
    )


@app.command("stats")
@config_errors()
def stats(
    since: Annotated[
        str | None,
        typer.Option("--since", help="Only attempts since a date, a time or an age (2h, 7d)."),
    ] = None,
    as_json: JsonOpt = False,
    store: StoreOpt = None,
) -> None:
    """Each agent provider's track record: attempts, success rate, retries, durations,
    tokens and cost per step, review score, last failure."""
    import json
    from datetime import UTC

    from agentic.cli.details import parse_since
    from agentic.cli.views import stats_table, stdout_console
    from agentic.knowledge import track_records

    settings = load_settings(**({"run_store_url": store} if store else {}))
    after = parse_since(since).astimezone(UTC).isoformat() if since else None
    _, index = _opened(store)
    with index:
        records = track_records(index, since=after)
    if as_json:
        typer.echo(json.dumps([r.to_json() for r in records], indent=2))
        return
    if not records:
        typer.echo("no attempts recorded yet")
        return
    flags = (settings.planner_min_success_rate, settings.planner_min_steps)
    stdout_console(pipe_width=240).print(stats_table(records, *flags))
