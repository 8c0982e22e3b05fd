"""Traces of runs: OpenTelemetry spans, exported with OTLP/HTTP when an endpoint is set.

One trace per run (docs/observability.md, "Traces")::

    run <workflow>                  agentic-cli: submit to the run's end (or the coordinator)
    ├── dispatch <step>             agentic-coordinator: the step message published
    │   └── step <step>             agentic-step: one attempt (run, step, attempt, provider, model)
    │       ├── chat <model>        one model call (CrewAI's event bus, agentic.runtime.spans)
    │       └── execute_tool <tool> one tool call
    └── …

The context crosses processes as a W3C ``traceparent``: in the submit request's and each
step message's NATS headers, in ``run.json`` (:attr:`RunRecord.traceparent`, so that a
restarted coordinator parents the steps it dispatches in the same trace), on the pipe to a
worker's step process, and in the ``TRACEPARENT`` variable of a ``subprocess`` step process
or a step Job. A ``traceparent`` from outside is untrusted: :meth:`TraceParent.parse`
accepts only the exact W3C version-00 form, and it is only ever a parent id.

Nothing is exported unless ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and ``OTEL_SDK_DISABLED`` is not true): no
provider, no exporter thread; a context received is still carried on, so that a process
that exports nothing does not cut the trace of those that do. The exporter reads the
other ``OTEL_EXPORTER_OTLP_*`` variables itself (headers, timeout, compression).

The provider is this module's own, never the global one of ``opentelemetry.trace``
(CrewAI does the same for its telemetry): an application that embeds agentic keeps its
own provider, and agentic's spans never go to someone else's exporter. It is made on
the first span of a process (and again in a forked child: a batch processor's thread does
not survive a fork), named by :func:`configure` (``service.name``).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from agentic import logs, redact

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span

# service.name of each kind of agentic process.
CLI = "agentic-cli"
COORDINATOR = "agentic-coordinator"
WORKER = "agentic-worker"
STEP = "agentic-step"
LIBRARY = "agentic"

HEADER = "traceparent"
"""The W3C header that carries a trace context (NATS headers)."""
ENV = "TRACEPARENT"
"""The variable that carries it into a step process or a step Job."""

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# What a step or worker Job gets of the creating process's OpenTelemetry settings. Never
# OTEL_EXPORTER_OTLP_*HEADERS (they hold the collector's API keys: a Secret's business),
# nor file paths a pod does not have.
FORWARDED_VARS = (
    *ENDPOINT_VARS,
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_SDK_DISABLED",
)
FLUSH_TIMEOUT_S = 5.0
TRACER_NAME = "agentic"

SpanKindName = Literal["internal", "client", "server", "producer", "consumer"]
AttributeValue = str | bool | int | float

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceParent:
    """A W3C trace context: the trace, the parent span in it, and whether it is sampled."""

    trace_id: str
    span_id: str
    flags: int = 1

    @classmethod
    def parse(cls, value: object) -> TraceParent | None:
        """The trace context in a ``traceparent`` value; None unless it is exactly the
        W3C version-00 form (lowercase hex, ids not all zero), whatever else it is."""
        if not isinstance(value, str) or len(value) != 55:
            return None
        match = _TRACEPARENT.match(value)
        if match is None:
            return None
        trace_id, span_id, flags = match.groups()
        if trace_id == "0" * 32 or span_id == "0" * 16:
            return None
        return cls(trace_id, span_id, int(flags, 16))

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def __str__(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


@dataclass
class _State:
    service: str = LIBRARY
    provider: TracerProvider | None = None
    pid: int | None = None


_state = _State()
_lock = threading.Lock()
_flushing: threading.Thread | None = None  # one export in the background at a time
_CURRENT: contextvars.ContextVar[TraceParent | None] = contextvars.ContextVar(
    "agentic_trace", default=None
)


def configure(service: str) -> bool:
    """Name this process's spans (``service.name``); True when they are exported.

    Cheap: the provider and its exporter thread are made on the first span.
    """
    _state.service = service
    return enabled()


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether spans are exported: an OTLP endpoint is set and the SDK is not disabled."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(env.get(name, "").strip() for name in ENDPOINT_VARS)


def current() -> TraceParent | None:
    """The trace context of the caller: its span, or the context it carries on."""
    return _CURRENT.get()


def from_headers(headers: Mapping[str, str] | None) -> TraceParent | None:
    """The trace context of a message's headers (None: absent or malformed)."""
    return TraceParent.parse((headers or {}).get(HEADER))


def inject(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the caller's ``traceparent`` added (when it has one)."""
    parent = current()
    if parent is not None:
        headers[HEADER] = str(parent)
    return headers


def env_carrier() -> dict[str, str]:
    """``{"TRACEPARENT": …}`` of the caller's trace context, for a child's environment."""
    parent = current()
    return {ENV: str(parent)} if parent is not None else {}


def from_env(env: Mapping[str, str] | None = None) -> TraceParent | None:
    """The trace context of ``TRACEPARENT`` in ``env`` (default: this process's)."""
    env = os.environ if env is None else env
    return TraceParent.parse(env.get(ENV))


def job_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a step or worker Job gets: the forwardable ``OTEL_*`` variables of ``env``
    (default: this process's) and the caller's ``TRACEPARENT``.

    An endpoint that carries credentials (``user:password@`` or a query string) is not
    forwarded, nor any exporter header: a Job gets those from a Secret.
    """
    env = os.environ if env is None else env
    found = {name: env[name] for name in FORWARDED_VARS if env.get(name)}
    for name in ENDPOINT_VARS:
        value = found.get(name)
        if value is not None and _carries_credentials(value):
            del found[name]
    if not any(name in found for name in ENDPOINT_VARS):
        found.pop("OTEL_SDK_DISABLED", None)
    return {**found, **env_carrier()}


def _carries_credentials(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return True
    return "@" in parts.netloc or bool(parts.query)


@contextlib.contextmanager
def carried(parent: TraceParent | None) -> Iterator[TraceParent | None]:
    """Make ``parent`` the caller's trace context, without a span of this process (what a
    process passes on, and what its log records name as ``trace_id``)."""
    if parent is None:
        yield None
        return
    token = _CURRENT.set(parent)
    try:
        with logs.log_context(trace_id=parent.trace_id):
            yield parent
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def span(
    name: str,
    *,
    parent: TraceParent | None = None,
    kind: SpanKindName = "internal",
    attributes: Mapping[str, AttributeValue | None] | None = None,
) -> Iterator[Span | None]:
    """A span of this process around the block, child of ``parent`` (default: the
    caller's context), current inside it.

    Not exported (no endpoint): nothing is recorded, and ``parent`` is carried on as the
    context of the block. An exception escaping the block marks the span failed with its
    type only (its message may hold what must not leave the process): use
    :func:`failed` to say more.

    Yields:
        The span, or None when nothing is exported.
    """
    parent = parent if parent is not None else current()
    provider = _provider()
    if provider is None:
        with carried(parent):
            yield None
        return
    from opentelemetry import trace

    tracer = provider.get_tracer(TRACER_NAME)
    started = tracer.start_span(
        name,
        context=_otel_context(parent),
        kind=_kind(kind),
        attributes={k: v for k, v in (attributes or {}).items() if v is not None},
    )
    ours = _of(started)
    token = _CURRENT.set(ours)
    try:
        with (
            trace.use_span(started, record_exception=False, set_status_on_exception=False),
            logs.log_context(trace_id=ours.trace_id),
        ):
            yield started
    except BaseException as exc:
        failed(started, type(exc).__name__)
        raise
    finally:
        _CURRENT.reset(token)
        started.end()


def root(name: str, attributes: Mapping[str, AttributeValue | None] | None = None) -> str | None:
    """The ``traceparent`` of a run: the caller's context, or a new trace whose root span
    (``name``) is recorded now; None when there is neither (nothing exported here)."""
    parent = current()
    if parent is not None:
        return str(parent)
    if _provider() is None:
        return None
    with span(name, kind="server", attributes=attributes):
        made = current()
    return str(made) if made is not None else None


def failed(target: Span | None, error_type: str, message: str | None = None) -> None:
    """Mark ``target`` failed: ``error.type`` and, masked of secrets, ``message``."""
    if target is None:
        return
    from opentelemetry.trace import Status, StatusCode

    target.set_attribute("error.type", error_type)
    text = redact.current().text(message) if message else error_type
    target.set_status(Status(StatusCode.ERROR, text[:512]))


def flush(timeout_s: float = FLUSH_TIMEOUT_S) -> bool:
    """Export what this process has recorded so far (before it reports or exits), waiting
    at most ``timeout_s``: the SDK's own flush waits as long as the exporter does (its
    timeout, retries included), so a collector that is down would hold the caller up.
    Past the wait the export goes on in the background. True when it is done."""
    provider = _state.provider
    if provider is None or _state.pid != os.getpid():
        return True
    global _flushing
    with _lock:
        if _flushing is None or not _flushing.is_alive():
            _flushing = threading.Thread(
                target=provider.force_flush, name="agentic-trace-flush", daemon=True
            )
            _flushing.start()
        flushing = _flushing
    flushing.join(timeout_s)
    return not flushing.is_alive()


def otel_context(parent: TraceParent | None) -> Context | None:
    """``parent`` as an OpenTelemetry context (for spans made by :func:`tracer`'s users)."""
    return _otel_context(parent)


def tracer() -> Any:
    """This process's OpenTelemetry tracer, or None when nothing is exported."""
    provider = _provider()
    return provider.get_tracer(TRACER_NAME) if provider is not None else None


def of(target: Span) -> TraceParent:
    """The trace context of a span (its children's parent)."""
    return _of(target)


# --- OpenTelemetry, imported only when spans are exported ----------------------------------


def _provider() -> TracerProvider | None:
    """This process's provider, made on first use; None when nothing is exported."""
    if not enabled():
        return None
    pid = os.getpid()
    provider = _state.provider
    if provider is not None and _state.pid == pid:
        return provider
    with _lock:
        if _state.provider is None or _state.pid != pid:
            _state.provider, _state.pid = _new_provider(_state.service), pid
        return _state.provider


def _new_provider(service: str) -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {
            "service.name": service,
            "service.namespace": "agentic",
            "process.pid": os.getpid(),
            "host.name": socket.gethostname(),
        }
    )
    # shutdown_on_exit: an atexit handler exports what is left when the process ends.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _otel_context(parent: TraceParent | None) -> Context | None:
    if parent is None:
        return None  # OpenTelemetry's current context: an embedding application's span
    from opentelemetry import trace

    remote = trace.SpanContext(
        trace_id=int(parent.trace_id, 16),
        span_id=int(parent.span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(parent.flags),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


def _of(target: Span) -> TraceParent:
    context = target.get_span_context()
    return TraceParent(
        format(context.trace_id, "032x"), format(context.span_id, "016x"), int(context.trace_flags)
    )


def _kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return getattr(SpanKind, name.upper())


__all__ = [
    "CLI",
    "COORDINATOR",
    "ENV",
    "HEADER",
    "STEP",
    "WORKER",
    "TraceParent",
    "carried",
    "configure",
    "current",
    "enabled",
    "env_carrier",
    "failed",
    "flush",
    "from_env",
    "from_headers",
    "inject",
    "job_env",
    "of",
    "otel_context",
    "root",
    "span",
    "tracer",
]
