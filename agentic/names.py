"""Every NATS subject, stream, consumer, header and run-store path, built in one place.

No other module formats a subject or a store path. Ids are validated here before they
become part of either, and so are artifact paths: :func:`is_safe_artifact_path` is the one
rule for the ``file=<path>`` an agent may name (``agentic.runtime.artifacts`` extracts
exactly what :func:`artifact_path` accepts, so a name that passes extraction is never
refused by the store).
"""

from __future__ import annotations

import re

from agentic.errors import UnsafeIdError
from agentic.ids import check_id, is_safe_id

# --- NATS ----------------------------------------------------------------------------------
SUBMIT_SUBJECT = "agentic.runs.submit"
CANCEL_SUBJECT = "agentic.control.cancel"

EVENTS_STREAM = "AGENTIC_EVENTS"
EVENTS_SUBJECTS = "agentic.events.>"
STEPS_STREAM = "AGENTIC_STEPS"
STEPS_SUBJECTS = "agentic.steps.>"
DLQ_STREAM = "AGENTIC_DLQ"
DLQ_SUBJECTS = "agentic.dlq.>"

MSG_ID_HEADER = "Nats-Msg-Id"
COORDINATOR_EVENTS_CONSUMER = "coordinator"

# Control notices (core NATS, not stored): the coordinator tells workers to kill an attempt.
TERMINATE_SUBJECTS = "agentic.control.terminate.>"

# Max-deliveries advisories are core NATS messages; this stream keeps them until the
# coordinator has moved the step to the DLQ, so an advisory raised while it is down is not lost.
ADVISORIES_STREAM = "AGENTIC_ADVISORIES"
# The coordinators' key-value bucket: the leader's lease (agentic.bus.lease).
COORDINATOR_BUCKET = "AGENTIC_COORDINATOR"
CLAIMS_BUCKET = "AGENTIC_CLAIMS"
# Provider budgets shared by every worker (agentic.bus.budget).
BUDGETS_BUCKET = "AGENTIC_BUDGETS"
DLQ_ADVISORIES_CONSUMER = "coordinator-dlq"

# Who published a run event (``coordinator`` or ``worker``).
PUBLISHER_HEADER = "Agentic-Publisher"
# JetStream's optimistic concurrency on a subject filter: the publish fails unless the last
# message matching the filter has this stream sequence (0: no message yet).
EXPECTED_LAST_SUBJECT_SEQ_HEADER = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQ_SUBJECT_HEADER = "Nats-Expected-Last-Subject-Sequence-Subject"

# A StepSpec or kill notice signed by the coordinator: the ed25519 signature of the payload
# (base64) and the public key (an nkey) it verifies with. Workers run nothing unsigned.
SIGNATURE_HEADER = "Agentic-Signature"
SIGNER_HEADER = "Agentic-Signer"

# Queued-work notices (core NATS, no payload): the coordinator queued a step of a pool. They
# wake the scaler without giving it the step itself to read.
QUEUED_SUBJECTS = "agentic.control.queued.>"

# What a worker puts before its reason when it refuses a step message (``+TERM <reason>``);
# JetStream repeats the reason in its ``MSG_TERMINATED`` advisory, which the coordinator reads.
REFUSED_PREFIX = "agentic refused: "

# Event types a worker publishes; every other type is the coordinator's.
WORKER_EVENT_TYPES = ("step_started", "step_progress", "step_succeeded", "step_failed")
# A run id has at most this many subject tokens (128 characters, no empty token).
MAX_RUN_ID_TOKENS = 64

# Headers of a dead letter: where the step message was and why it was moved.
DLQ_SUBJECT_HEADER = "Agentic-Dlq-Subject"
DLQ_STREAM_SEQ_HEADER = "Agentic-Dlq-Stream-Seq"
DLQ_DELIVERIES_HEADER = "Agentic-Dlq-Deliveries"
DLQ_REASON_HEADER = "Agentic-Dlq-Reason"


def events_subject(run_id: str, event_type: str) -> str:
    """``agentic.events.<run_id>.<type>``."""
    return f"agentic.events.{check_id(run_id, 'run id')}.{event_type}"


def run_events_filter(run_id: str) -> str:
    """``agentic.events.<run_id>.>``: every event of one run."""
    return f"agentic.events.{check_id(run_id, 'run id')}.>"


def run_timeline_filter(run_id: str) -> str:
    """``agentic.events.<run_id>.*``: the events of exactly this run.

    Unlike :func:`run_events_filter`, it cannot match the events of a run whose id extends
    this one with a dot (``a`` vs ``a.b``): an event type is always one token.
    """
    return f"agentic.events.{check_id(run_id, 'run id')}.*"


def event_msg_id(
    run_id: str, step_id: str, attempt: int, event_type: str, delivery: int | None = None
) -> str:
    """``<run>.<step>.<attempt>.<type>[.<delivery>]``: the ``Nats-Msg-Id`` of a worker's event.

    A worker that reports the same attempt twice (a redelivered, already committed step)
    stores one event within the duplicate window; ``delivery`` keeps each delivery's
    ``step_started``.
    """
    base = f"{step_msg_id(run_id, step_id, attempt)}.{event_type}"
    return base if delivery is None else f"{base}.{int(delivery)}"


def terminate_subject(run_id: str) -> str:
    """``agentic.control.terminate.<run_id>``: kill notices for the attempts of one run."""
    return f"agentic.control.terminate.{check_id(run_id, 'run id')}"


def run_id_from_events_subject(subject: str) -> str:
    """The run id inside ``agentic.events.<run_id>.<type>``.

    Safe run ids may contain dots, which NATS reads as token separators: the run id is every
    token between ``agentic.events`` and the event type (which never has a dot). For the same
    reason, consumers filter on ``agentic.events.>`` rather than ``agentic.events.*.<type>``.
    """
    parts = subject.split(".")
    if len(parts) < 4 or parts[:2] != ["agentic", "events"]:
        raise ValueError(f"not an events subject: {subject!r}")
    return check_id(".".join(parts[2:-1]), "run id")


def event_type_from_subject(subject: str) -> str:
    """The event type (last token) of ``agentic.events.<run_id>.<type>``."""
    run_id_from_events_subject(subject)
    return subject.rsplit(".", 1)[1]


def event_type_patterns(event_type: str) -> list[str]:
    """Subjects matching ``agentic.events.<run_id>.<event_type>`` for every run id.

    A run id may contain dots, so it spans 1 to :data:`MAX_RUN_ID_TOKENS` subject tokens and
    no single wildcard can stand for it while the last token is fixed: one pattern per
    length (what a worker's publish permissions list).
    """
    return [
        "agentic.events." + ".".join(["*"] * tokens) + f".{event_type}"
        for tokens in range(1, MAX_RUN_ID_TOKENS + 1)
    ]


def queued_subject(pool: str) -> str:
    """``agentic.control.queued.<pool>``: a step of ``pool`` was queued (no payload)."""
    return f"agentic.control.queued.{check_pool(pool)}"


def terminated_advisory(stream: str = STEPS_STREAM, consumer: str = "*") -> str:
    """The advisory JetStream publishes when a consumer's message is terminated (``+TERM``)."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{stream}.{consumer}"


def inbox_prefix(identity: str) -> str:
    """``_agentic_inbox.<identity>``: where a service's replies and deliveries arrive.

    Every service identity has inboxes of its own, outside ``_INBOX.>`` (which clients
    share), so a client that may read its own replies cannot read a worker's step
    deliveries or the coordinator's API replies.
    """
    return f"_agentic_inbox.{check_id(identity, 'identity')}"


def check_pool(pool: str) -> str:
    """A pool is a safe id without dots: it is one subject token and part of a consumer name."""
    check_id(pool, "pool")
    if "." in pool:
        raise UnsafeIdError(f"unsafe pool {pool!r}: a pool name cannot contain '.'")
    return pool


def steps_subject(pool: str) -> str:
    """``agentic.steps.<pool>``: the work queue of one pool."""
    return f"agentic.steps.{check_pool(pool)}"


def workers_consumer(pool: str) -> str:
    """``workers-<pool>``: the durable pull consumer of a pool."""
    return f"workers-{check_pool(pool)}"


def pool_from_steps_subject(subject: str) -> str:
    """The pool inside ``agentic.steps.<pool>``."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[:2] != ["agentic", "steps"]:
        raise ValueError(f"not a steps subject: {subject!r}")
    return check_pool(".".join(parts[2:]))


def dlq_subject(pool: str) -> str:
    """``agentic.dlq.<pool>``."""
    return f"agentic.dlq.{check_pool(pool)}"


def dlq_msg_id(stream: str, stream_seq: int) -> str:
    """``dlq.<stream>.<seq>``: moving the same message twice stores one dead letter."""
    return f"dlq.{stream}.{int(stream_seq)}"


def step_msg_id(run_id: str, step_id: str, attempt: int) -> str:
    """``<run_id>.<step_id>.<attempt>``: the ``Nats-Msg-Id`` of a step_ready message."""
    return f"{check_id(run_id, 'run id')}.{check_id(step_id, 'step id')}.{int(attempt)}"


def max_deliveries_advisory(stream: str = STEPS_STREAM, consumer: str = "*") -> str:
    """The advisory JetStream publishes when a message exhausts ``max_deliver``."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


def pull_request_subject(stream: str, consumer: str) -> str:
    """The JetStream API subject that asks a pull consumer for its next messages."""
    return f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"


# The label that marks a round's run of an ``--iterative`` goal with the goal's run id.
ITERATIVE_PARENT_LABEL = "agentic.iterative-of"

# --- run store -----------------------------------------------------------------------------
RUNS_DIR = "runs"


INDEX_DIR = "index"
"""The runs index (:mod:`agentic.store.index`): what lists runs without reading history."""
INDEX_VERSION = f"{INDEX_DIR}/version.json"
OPEN_RUNS_DIR = f"{INDEX_DIR}/open"
INDEXED_RUNS_DIR = f"{INDEX_DIR}/runs"
_INDEX_ENTRY = re.compile(r"^([0-9]{12})_(.+)\.json$")


def open_run_marker(run_id: str) -> str:
    """One small document per run that has not ended (``pending`` or ``running``)."""
    return f"{OPEN_RUNS_DIR}/{check_id(run_id, 'run id')}.json"


def index_day_dir(day: str) -> str:
    """The index entries of the runs created on ``day`` (``YYYY-MM-DD``, UTC)."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", day):
        raise ValueError(f"not a day: {day!r}")
    return f"{INDEXED_RUNS_DIR}/{day}"


def index_entry(day: str, stamp: str, run_id: str) -> str:
    """A run's index entry: named by its creation time of day (``HHMMSSffffff``, UTC) then
    its id, so that names sort by creation time without reading any entry."""
    if not re.fullmatch(r"[0-9]{12}", stamp):
        raise ValueError(f"not a time stamp: {stamp!r}")
    return f"{index_day_dir(day)}/{stamp}_{check_id(run_id, 'run id')}.json"


def parse_index_entry(name: str) -> tuple[str, str] | None:
    """``(stamp, run_id)`` of an entry's file name; None for anything else (temp files)."""
    match = _INDEX_ENTRY.fullmatch(name)
    if match is None or not is_safe_id(match.group(2)):
        return None
    return match.group(1), match.group(2)


def run_dir(run_id: str) -> str:
    return f"{RUNS_DIR}/{check_id(run_id, 'run id')}"


def run_json(run_id: str) -> str:
    return f"{run_dir(run_id)}/run.json"


def cancel_json(run_id: str) -> str:
    """A request to cancel a run driven by a local process (``agentic cancel``)."""
    return f"{run_dir(run_id)}/cancel.json"


def steps_dir(run_id: str) -> str:
    """The folder holding one sub-folder per step of a run."""
    return f"{run_dir(run_id)}/steps"


def step_dir(run_id: str, step_id: str) -> str:
    return f"{steps_dir(run_id)}/{check_id(step_id, 'step id')}"


def spec_json(run_id: str, step_id: str) -> str:
    return f"{step_dir(run_id, step_id)}/spec.json"


def attempts_dir(run_id: str, step_id: str) -> str:
    return f"{step_dir(run_id, step_id)}/attempts"


def attempt_json(run_id: str, step_id: str, attempt: int) -> str:
    if int(attempt) < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    return f"{attempts_dir(run_id, step_id)}/{int(attempt)}.json"


def result_json(run_id: str, step_id: str) -> str:
    return f"{step_dir(run_id, step_id)}/result.json"


def artifacts_dir(run_id: str, step_id: str) -> str:
    return f"{run_dir(run_id)}/artifacts/{check_id(step_id, 'step id')}"


ARTIFACT_SEGMENT_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$"
"""One ``/``-separated segment of an artifact path. Wider than a safe id (``_notes.md``,
``c++.md``: names agents write), but never empty, hidden (``.``-leading) or ``..``."""
_ARTIFACT_SEGMENT = re.compile(ARTIFACT_SEGMENT_PATTERN)
MAX_ARTIFACT_PATH_CHARS = 512


def is_safe_artifact_path(relpath: object) -> bool:
    """True for a relative ``/``-separated path that stays inside a step's artifacts folder.

    Every segment matches :data:`ARTIFACT_SEGMENT_PATTERN` and has no ``..``; the path has at
    most :data:`MAX_ARTIFACT_PATH_CHARS` characters. So no absolute path, backslash, empty,
    hidden or ``..`` segment.
    """
    if not isinstance(relpath, str) or not relpath or len(relpath) > MAX_ARTIFACT_PATH_CHARS:
        return False
    return all(_ARTIFACT_SEGMENT.fullmatch(s) and ".." not in s for s in relpath.split("/"))


def check_artifact_path(relpath: str) -> str:
    """Return ``relpath`` or raise :class:`UnsafeIdError` (see :func:`is_safe_artifact_path`)."""
    if not is_safe_artifact_path(relpath):
        shown = relpath if isinstance(relpath, str) and len(relpath) <= 60 else f"{relpath!s:.60}…"
        raise UnsafeIdError(
            f"unsafe artifact path {shown!r}: at most {MAX_ARTIFACT_PATH_CHARS} characters of "
            f"'/'-separated segments that match {ARTIFACT_SEGMENT_PATTERN} without '..'"
        )
    return relpath


def artifact_path(run_id: str, step_id: str, relpath: str) -> str:
    """Path of one artifact; ``relpath`` must pass :func:`is_safe_artifact_path`."""
    return f"{artifacts_dir(run_id, step_id)}/{check_artifact_path(relpath)}"


KEYS_DIR = "keys"


def signer_json(public_key: str) -> str:
    """``keys/<public key>.json``: a coordinator's step-signing public key (never a seed)."""
    return f"{KEYS_DIR}/{check_id(public_key, 'public key')}.json"


def sessions_dir() -> str:
    return "sessions"


def session_json(session: str) -> str:
    return f"sessions/{check_id(session, 'session')}.json"


# --- pods ----------------------------------------------------------------------------------
MCP_SIDECARS_ENV = "AGENTIC_MCP_SIDECARS"
"""Set on a step's container by a pod that runs MCP servers as sidecars (agentic.k8s.sidecars):
JSON ``{provider id: "http://127.0.0.1:<port><path>"}``; the runtime connects there instead of
starting those providers' servers."""
