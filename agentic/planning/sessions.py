"""Planner sessions: the goals, plans and final answers the planner has seen before.

A session is one small JSON document in the run store (``sessions/<name>.json``), so it
works on every backend and from every machine that reaches the store. An entry is added
when a goal of the session is planned (the run id is known by then); its final answer is
filled in when the run ends. A run that ended where nobody updated the session (a detached
``nats`` run) still counts: :func:`session_history` reads the answer from its ``run.json``.

Two runs of one session finishing at the same moment may race on the document (last
write wins for the ``final_answer`` fields, which :func:`session_history` then recovers
from ``run.json``); a session is a conversation, not a queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from agentic.contracts import Frozen, RunRecord, first_error, utcnow
from agentic.errors import ConfigError, DecodeError, StoreError
from agentic.ids import SafeId
from agentic.names import session_json

if TYPE_CHECKING:
    from agentic.store import RunStore

MAX_ENTRIES_SHOWN = 10
"""The planner sees at most this many earlier goals of a session (the latest ones)."""


class SessionEntry(Frozen):
    """One goal of a session."""

    run_id: SafeId
    goal: str
    steps: list[str] = Field(default_factory=list, description="'<step> (<agent>)' in order.")
    final_answer: str | None = None
    status: str | None = None
    planned_at: datetime = Field(default_factory=utcnow)


class Session(Frozen):
    """What ``sessions/<name>.json`` holds."""

    schema_version: int = 1
    name: SafeId
    entries: list[SessionEntry] = Field(default_factory=list)


def read_session(store: RunStore, name: str) -> Session:
    """The session called ``name``; an empty one when it does not exist yet.

    Raises:
        ConfigError: the stored document is not a session.
        StoreError: the store could not be read.
    """
    path = session_json(name)
    try:
        data = store.read_json(path)
    except DecodeError as exc:
        raise ConfigError(f"session {name!r}: {exc}") from exc
    if data is None:
        return Session(name=name)
    try:
        return Session.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"session {name!r} ({path} in the run store): {first_error(exc)}"
        ) from exc


def write_session(store: RunStore, session: Session) -> None:
    """Store ``session`` (replacing the previous document)."""
    store.write_json(session_json(session.name), session.model_dump(mode="json"))


def add_entry(store: RunStore, name: str, entry: SessionEntry) -> Session:
    """Append ``entry`` to session ``name`` (replacing an entry of the same run)."""
    session = read_session(store, name)
    kept = [e for e in session.entries if e.run_id != entry.run_id]
    updated = session.model_copy(update={"entries": [*kept, entry]})
    write_session(store, updated)
    return updated


def record_outcome(store: RunStore, record: RunRecord) -> None:
    """Fill in the final answer and status of ``record``'s entry in its session, if any."""
    options = record.request.planner
    if options is None or options.session is None or not record.is_terminal:
        return
    session = read_session(store, options.session)
    entries = [
        _with_outcome(e, record) if e.run_id == record.run_id else e for e in session.entries
    ]
    write_session(store, session.model_copy(update={"entries": entries}))


def _with_outcome(entry: SessionEntry, record: RunRecord) -> SessionEntry:
    answer = record.output if record.status == "succeeded" else None
    return entry.model_copy(update={"final_answer": answer, "status": record.status})


def session_history(store: RunStore, name: str) -> list[SessionEntry]:
    """The latest entries of session ``name``, oldest first, with answers filled from runs."""
    entries = read_session(store, name).entries[-MAX_ENTRIES_SHOWN:]
    return [_completed(store, entry) for entry in entries]


def _completed(store: RunStore, entry: SessionEntry) -> SessionEntry:
    if entry.status is not None:
        return entry
    try:
        record = store.read_run(entry.run_id)
    except (ConfigError, StoreError):
        return entry  # the run was never created or was deleted: the goal still counts
    if not record.is_terminal:
        return entry
    return _with_outcome(entry, record)


def entry_for(run_id: str, goal: str, plan: dict[str, Any]) -> SessionEntry:
    """A new entry for a goal whose plan was accepted (``plan``: a :class:`Plan` as JSON)."""
    steps = [f"{s['id']} ({s['agent_provider_id']})" for s in plan.get("steps", [])]
    return SessionEntry(run_id=run_id, goal=goal, steps=steps)
