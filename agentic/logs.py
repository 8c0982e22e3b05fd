"""Log lines of every agentic process: one setup, text or JSON, secrets masked, each record
tagged with the run, step and attempt it belongs to.

:func:`configure` is the one logging setup of the CLI, the services and step processes
(``AGENTIC_LOG_LEVEL``, ``AGENTIC_LOG_FORMAT``): one handler on the root logger, writing to
the ``sys.stderr`` of the moment (so that a live display that redirects it shows log lines
above itself), with

* :class:`ContextFilter`: the ids of the current :class:`LogContext` on every record, ours
  and those of CrewAI, LiteLLM, httpx or the root logger alike, since the filter sits on
  the handler, not on a logger;
* :class:`agentic.redact.RedactingFilter`, and the whole formatted line masked once more
  (a library's ``extra`` fields are in a JSON line too);
* ``text`` lines: ``time level logger run_id=… step_id=… attempt=…: message``, or ``json``
  lines: one object per line with ``time``, ``level``, ``logger``, ``message``, the ids
  present (``run_id``, ``step_id``, ``attempt``, ``trace_id``) and ``exc`` for a traceback.

A :class:`LogContext` lives in a context variable: :func:`log_context` sets it around a
step attempt, a worker's handling of a message or the coordinator's handling of a run's
event, and every record logged inside (in that thread, or in a thread or task started
from it with a copy of the context, as CrewAI starts its own) carries it. ``trace_id`` is
the run's trace where one is current (:mod:`agentic.tracing` sets it through
:func:`log_context`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal, ParamSpec, Protocol, TextIO, TypeVar

from agentic import redact

LogFormat = Literal["text", "json"]
P = ParamSpec("P")
R = TypeVar("R")

CONTEXT_FIELDS = ("run_id", "step_id", "attempt", "trace_id")
"""Record attributes (and JSON keys) a :class:`LogContext` gives a record, in this order."""

LIBRARY_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "crewai", "httpx")
"""Libraries that may bring handlers of their own: their records go through ours instead."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(ids)s: %(message)s"

CurrentStep = Callable[[], "tuple[str, int] | None"]
"""Which step attempt runs now, asked for each record: ``(step_id, attempt)`` or None."""


@dataclass(frozen=True)
class LogContext:
    """What the records logged in this context belong to (None: unknown or not applicable).

    ``current_step`` serves a crew that runs several steps one after another in one
    context: it is asked, for each record, which step runs at that moment.
    """

    run_id: str | None = None
    step_id: str | None = None
    attempt: int | None = None
    trace_id: str | None = None
    current_step: CurrentStep | None = None

    def fields(self) -> dict[str, str | int]:
        """The ids that are known, in :data:`CONTEXT_FIELDS` order."""
        found: dict[str, str | int | None] = {
            "run_id": self.run_id,
            "step_id": self.step_id,
            "attempt": self.attempt,
            "trace_id": self.trace_id,
        }
        if self.current_step is not None and self.step_id is None:
            now = self.current_step()
            if now is not None:
                found["step_id"], found["attempt"] = now
        return {name: value for name, value in found.items() if value is not None}


_NONE = LogContext()
_CONTEXT: contextvars.ContextVar[LogContext | None] = contextvars.ContextVar(
    "agentic_log_context", default=None
)


def current_context() -> LogContext:
    """The log context of the caller."""
    return _CONTEXT.get() or _NONE


@contextlib.contextmanager
def log_context(
    *,
    run_id: str | None = None,
    step_id: str | None = None,
    attempt: int | None = None,
    trace_id: str | None = None,
    current_step: CurrentStep | None = None,
) -> Iterator[LogContext]:
    """Tag every record logged inside with these ids; the ids given replace the outer
    context's, the others are kept (a step inside a run keeps the run's ``trace_id``)."""
    outer = current_context()
    if run_id is not None and run_id != outer.run_id:
        outer = LogContext(trace_id=outer.trace_id)  # another run: its steps are not ours
    elif step_id is not None and step_id != outer.step_id:
        outer = replace(outer, attempt=None, current_step=None)  # another step's attempt
    inner = LogContext(
        run_id=outer.run_id if run_id is None else run_id,
        step_id=outer.step_id if step_id is None else step_id,
        attempt=outer.attempt if attempt is None else attempt,
        trace_id=outer.trace_id if trace_id is None else trace_id,
        current_step=outer.current_step if current_step is None else current_step,
    )
    token = _CONTEXT.set(inner)
    try:
        yield inner
    finally:
        _CONTEXT.reset(token)


class StepAttempt(Protocol):
    """What names a step attempt (a StepSpec, a StepResult)."""

    @property
    def run_id(self) -> str: ...
    @property
    def step_id(self) -> str: ...
    @property
    def attempt(self) -> int: ...


def in_step_context(func: Callable[P, R]) -> Callable[P, R]:
    """Run ``func(spec, …)`` in the log context of the step attempt ``spec`` names (and
    adopt the handlers a library imported since :func:`configure` installed: LiteLLM adds
    its own when it is first imported, by CrewAI, inside a step)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        spec: StepAttempt = args[0]  # type: ignore[assignment]
        adopt_library_loggers()
        with log_context(run_id=spec.run_id, step_id=spec.step_id, attempt=spec.attempt):
            return func(*args, **kwargs)

    return wrapper


class ContextFilter(logging.Filter):
    """Puts the ids of the current :class:`LogContext` on each record (an id the record
    already carries, from ``extra=``, is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in current_context().fields().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


def record_ids(record: logging.LogRecord) -> dict[str, Any]:
    """The context ids a record carries, in :data:`CONTEXT_FIELDS` order."""
    found = ((name, getattr(record, name, None)) for name in CONTEXT_FIELDS)
    return {name: value for name, value in found if value is not None}


class TextFormatter(logging.Formatter):
    """``time level logger run_id=… step_id=… attempt=…: message``, secrets masked."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        ids = "".join(f" {name}={value}" for name, value in record_ids(record).items())
        return TEXT_FORMAT % {**vars(record), "ids": ids}

    def format(self, record: logging.LogRecord) -> str:
        return redact.current().text(super().format(record))


def json_formatter() -> logging.Formatter:
    """One JSON object per record (python-json-logger), secrets masked."""
    from pythonjsonlogger.json import JsonFormatter

    class _Json(JsonFormatter):
        def add_fields(
            self,
            log_data: dict[str, Any],
            record: logging.LogRecord,
            message_dict: dict[str, Any],
        ) -> None:
            found: dict[str, Any] = {}
            super().add_fields(found, record, message_dict)
            # time, level, logger, message, the ids, a library's extras, the traceback
            for key in ("time", "level", "logger", "message"):
                log_data[key] = found.pop(key, None)
            log_data.update(record_ids(record))
            tail: dict[str, Any] = {
                key: found.pop(key) for key in ("exc", "stack_info") if key in found
            }
            log_data.update({k: v for k, v in found.items() if k not in log_data})
            log_data.update(tail)

        def format(self, record: logging.LogRecord) -> str:
            return redact.current().text(super().format(record))

    return _Json(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger", "exc_info": "exc"},
        timestamp="time",
        json_ensure_ascii=False,
        reserved_attrs=list(_RESERVED),
    )


# Every attribute of a plain LogRecord: what a JSON line must not repeat as an "extra".
_RESERVED = tuple(
    sorted(
        set(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
        | {"message", "asctime", "taskName"}
    )
)


class StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted (or to a fixed stream).

    Live displays (``rich``) replace ``sys.stderr`` while they are shown and print what is
    written to it above themselves: log lines then never break them.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        logging.Handler.__init__(self)
        self._fixed = stream

    @property
    def stream(self) -> TextIO:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        self._fixed = value


def formatter_for(fmt: LogFormat) -> logging.Formatter:
    """The formatter of ``fmt`` lines."""
    return json_formatter() if fmt == "json" else TextFormatter()


def configure(
    level: str = "WARNING", fmt: LogFormat = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Make this process log ``fmt`` lines at ``level`` and above on stderr (or ``stream``).

    Replaces the root logger's stream handlers (ours, or those ``logging.basicConfig``
    left), keeps any other (a test's capture), and masks this process's credential-like
    variables in every line. Calling it again reconfigures.

    Returns:
        The handler it installed.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        if type(old) in (StderrHandler, logging.StreamHandler):
            root.removeHandler(old)
    handler = StderrHandler(stream)
    handler.setFormatter(formatter_for(fmt))
    handler.addFilter(ContextFilter())
    handler.addFilter(redact.RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    redact.protect_environment()
    adopt_library_loggers()
    return handler


def configure_from_settings() -> logging.Handler:
    """:func:`configure` with ``AGENTIC_LOG_LEVEL`` and ``AGENTIC_LOG_FORMAT`` (their
    defaults when the settings are invalid: whoever reads them next says why)."""
    from pydantic import ValidationError

    from agentic.settings import get_settings

    try:
        settings = get_settings()
        return configure(settings.log_level, settings.log_format)
    except (ValidationError, ValueError):
        return configure()


def adopt_library_loggers() -> None:
    """Send the records of :data:`LIBRARY_LOGGERS` through the root's handler only: a
    library that installed a stream handler of its own would print them a second time,
    unmasked and without ids. Nothing unless :func:`configure` set this process up (an
    application that embeds agentic keeps its own logging)."""
    if not any(isinstance(h, StderrHandler) for h in logging.getLogger().handlers):
        return
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
        logger.propagate = True


__all__ = [
    "CONTEXT_FIELDS",
    "ContextFilter",
    "LogContext",
    "LogFormat",
    "StderrHandler",
    "TextFormatter",
    "configure",
    "configure_from_settings",
    "current_context",
    "in_step_context",
    "json_formatter",
    "log_context",
]
