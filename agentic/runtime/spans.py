"""Spans of a step attempt and of the model and tool calls inside it (:mod:`agentic.tracing`).

:func:`attempt` is the span of one attempt (``step <step_id>``), child of the context the
step was handed (a worker's pipe, :mod:`agentic.runtime.host`) or, for a ``subprocess``
step process or a step Job, of ``TRACEPARENT``. Its children come from CrewAI's event bus,
its supported hook for watching a crew: ``chat <model>`` for each model call
(``LLMCallStartedEvent`` to ``LLMCallCompletedEvent`` / ``LLMCallFailedEvent``) and
``execute_tool <tool>`` for each tool call (``ToolUsageStartedEvent`` to
``ToolUsageFinishedEvent`` / ``ToolUsageErrorEvent``).

CrewAI runs its handlers on a thread pool, in a copy of the emitter's context (so the
attempt's span is the current one there), and a call's two events may be handled in
either order: each span is made once both halves are in, with the events' own times.
:func:`settle` waits for the handlers, then exports, before the step process reports.
Spans carry ids, names, models and token counts; never prompts, answers or tool
arguments, and an error's message only masked (:mod:`agentic.redact`).

The ``inprocess`` backend runs a whole workflow in one kickoff: :func:`crew` around it
makes a ``step <step_id>`` span of each task CrewAI starts (``TaskStartedEvent``), which
:func:`task_ended` ends with the task's StepResult (the backend stops the crew from the
callback of the run's last task: CrewAI emits no ``TaskCompletedEvent`` for it), and the
calls of a task go under its span.

The handlers are registered once per process, and only where spans are exported.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentic import tracing
from agentic.contracts import StepResult, StepSpec, WorkflowConfig

if TYPE_CHECKING:
    from opentelemetry.trace import Span

# Calls whose other half never came (a killed tool, a crew interrupted): the oldest go.
MAX_PENDING = 4096
SETTLE_TIMEOUT_S = 5.0
# How long a step's result may wait for a collector: one that is down or slow must not
# slow every step (what is left is exported by the processor's thread, later).
EXPORT_WAIT_S = 1.0


@contextlib.contextmanager
def attempt(spec: StepSpec, env: Mapping[str, str]) -> Iterator[Span | None]:
    """The span of one attempt of ``spec``, current inside the block."""
    parent = tracing.current() or tracing.from_env(env)
    if tracing.enabled():
        install()
    provider = spec.agent_provider
    model = _text(provider.get("model"))
    attributes: dict[str, tracing.AttributeValue | None] = {
        "agentic.run_id": spec.run_id,
        "agentic.step_id": spec.step_id,
        "agentic.attempt": spec.attempt,
        "agentic.workflow": spec.workflow_name,
        "agentic.pool": spec.pool,
        "agentic.provider": _text(provider.get("id")),
        "agentic.provider_type": _text(provider.get("type")),
        "agentic.model": model,
        "gen_ai.request.model": model,
    }
    with tracing.span(
        f"step {spec.step_id}", parent=parent, kind="consumer", attributes=attributes
    ) as span:
        yield span


@dataclass(frozen=True)
class _Crew:
    """The run of an ``inprocess`` kickoff, for the spans of its tasks."""

    run_id: str
    workflow: WorkflowConfig
    attempts: Mapping[str, int]
    tasks: set[str] = field(default_factory=set)  # CrewAI ids of the tasks it started


_CREW: contextvars.ContextVar[_Crew | None] = contextvars.ContextVar("agentic_crew", default=None)


@contextlib.contextmanager
def crew(run_id: str, workflow: WorkflowConfig, attempts: Mapping[str, int]) -> Iterator[None]:
    """Spans of the tasks the ``inprocess`` kickoff inside the block starts."""
    if not tracing.enabled():
        yield
        return
    install()
    ours = _Crew(run_id, workflow, attempts)
    token = _CREW.set(ours)
    try:
        yield
    finally:
        _CREW.reset(token)
        from crewai.events.event_bus import crewai_event_bus

        crewai_event_bus.flush(timeout=SETTLE_TIMEOUT_S)
        _listener.close(ours.tasks)  # an interrupted kickoff's tasks


def task_ended(task_id: str, result: StepResult) -> None:
    """End the span of an ``inprocess`` task (CrewAI's id) with its result (nothing
    outside :func:`crew`, or when nothing is exported)."""
    if _CREW.get() is not None:
        _listener.task_ended(task_id, result)


def ended(span: Span | None, result: StepResult) -> None:
    """Put the attempt's outcome on its span: status, tokens, the error (masked)."""
    if span is None:
        return
    span.set_attribute("agentic.status", result.status)
    span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
    span.set_attribute("gen_ai.usage.output_tokens", result.usage.completion_tokens)
    if result.error is not None:
        span.set_attribute("agentic.retryable", result.error.retryable)
        tracing.failed(span, result.error.type, result.error.message)


def settle(timeout_s: float = SETTLE_TIMEOUT_S) -> None:
    """Wait for CrewAI's handlers of the calls made so far, then export every span (for
    at most :data:`EXPORT_WAIT_S`)."""
    if not _listener.installed:
        return
    from crewai.events.event_bus import crewai_event_bus

    crewai_event_bus.flush(timeout=timeout_s)
    tracing.flush(EXPORT_WAIT_S)


def install() -> None:
    """Register the handlers on CrewAI's event bus (once per process)."""
    _listener.install()


@dataclass
class _Call:
    """One model or tool call, as its events come in."""

    name: str
    kind: str
    parent: tracing.TraceParent | None = None
    started: datetime | None = None
    ended: datetime | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    error: tuple[str, str] | None = None
    task_id: str | None = None


class _Listener:
    def __init__(self) -> None:
        self.installed = False
        self._lock = threading.Lock()
        self._calls: OrderedDict[str, _Call] = OrderedDict()
        # Spans of an inprocess crew's tasks by CrewAI task id (kept after they end: a
        # call's handler may come last), and those still open.
        self._tasks: OrderedDict[str, tracing.TraceParent] = OrderedDict()
        self._open: dict[str, Span] = {}
        self._early: dict[str, StepResult] = {}  # reported before its start was handled

    def install(self) -> None:
        with self._lock:
            if self.installed:
                return
            from crewai.events.base_events import BaseEvent
            from crewai.events.event_bus import crewai_event_bus
            from crewai.events.types.llm_events import (
                LLMCallCompletedEvent,
                LLMCallFailedEvent,
                LLMCallStartedEvent,
            )
            from crewai.events.types.task_events import TaskStartedEvent
            from crewai.events.types.tool_usage_events import (
                ToolUsageErrorEvent,
                ToolUsageFinishedEvent,
                ToolUsageStartedEvent,
            )

            handlers: dict[type[BaseEvent], Callable[[Any, Any], None]] = {
                LLMCallStartedEvent: self._model_started,
                LLMCallCompletedEvent: self._model_completed,
                LLMCallFailedEvent: self._model_failed,
                ToolUsageStartedEvent: self._tool_started,
                ToolUsageFinishedEvent: self._tool_finished,
                ToolUsageErrorEvent: self._tool_failed,
                TaskStartedEvent: self._task_started,
            }
            for event_type, handler in handlers.items():
                crewai_event_bus.register_handler(event_type, handler)
            self.installed = True

    # --- CrewAI's events (on its handler threads) ----------------------------------------

    def _model_started(self, source: Any, event: Any) -> None:
        model = _text(event.model)
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": model,
            "agentic.call_id": _text(event.call_id),
        }
        self._start(event, _Call(f"chat {model or 'model'}", "client", attributes=attributes))

    def _model_completed(self, source: Any, event: Any) -> None:
        usage = event.usage if isinstance(event.usage, dict) else {}
        attributes = {
            "gen_ai.usage.input_tokens": _int(usage.get("prompt_tokens")),
            "gen_ai.usage.output_tokens": _int(usage.get("completion_tokens")),
            "gen_ai.response.finish_reasons": _text(event.finish_reason),
        }
        self._end(event, attributes)

    def _model_failed(self, source: Any, event: Any) -> None:
        self._end(event, {}, error=("LLMCallFailed", str(event.error)))

    def _tool_started(self, source: Any, event: Any) -> None:
        tool = _text(event.tool_name)
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool}
        self._start(event, _Call(f"execute_tool {tool}", "internal", attributes=attributes))

    def _tool_finished(self, source: Any, event: Any) -> None:
        failure = getattr(event, "failure", None)
        error = ("ToolFailure", str(failure)) if failure is not None else None
        self._end(event, {"agentic.from_cache": bool(event.from_cache)}, error=error)

    def _tool_failed(self, source: Any, event: Any) -> None:
        self._end(event, {}, error=("ToolError", str(event.error)))

    def _task_started(self, source: Any, event: Any) -> None:
        crew, tracer = _CREW.get(), tracing.tracer()
        if crew is None or tracer is None or event.task_id is None:
            return  # a step process's mini-crew: its attempt's span is the step's
        step_id = str(event.task_name)
        attributes = {
            "agentic.run_id": crew.run_id,
            "agentic.step_id": step_id,
            "agentic.attempt": crew.attempts.get(step_id, 1),
            "agentic.workflow": crew.workflow.name,
            **_provider_attributes(crew.workflow, step_id),
        }
        span = tracer.start_span(
            f"step {step_id}",
            context=tracing.otel_context(tracing.current()),  # the run's root span
            attributes={k: v for k, v in attributes.items() if v is not None},
            start_time=_ns(event.timestamp),
        )
        with self._lock:
            crew.tasks.add(event.task_id)
            self._open[event.task_id] = span
            self._tasks[event.task_id] = tracing.of(span)
            while len(self._tasks) > MAX_PENDING:
                self._tasks.popitem(last=False)
            early = self._early.pop(event.task_id, None)
        if early is not None:
            self.task_ended(event.task_id, early)

    def task_ended(self, task_id: str, result: StepResult) -> None:
        with self._lock:
            span = self._open.pop(task_id, None)
            if span is None:  # its start is still on CrewAI's handler threads
                self._early[task_id] = result
                while len(self._early) > MAX_PENDING:
                    del self._early[next(iter(self._early))]
                return
        ended(span, result)
        finished = result.timing.finished_at
        span.end(end_time=_ns(finished) if finished is not None else None)

    def close(self, task_ids: set[str]) -> None:
        """End the spans of tasks that never reported (their kickoff was interrupted)."""
        with self._lock:
            left = [self._open.pop(t) for t in task_ids if t in self._open]
        for span in left:
            span.set_attribute("agentic.status", "interrupted")
            span.end()

    def parent_of(self, call: _Call) -> tracing.TraceParent | None:
        """The span a call goes under: its inprocess task's, else its emitter's."""
        if call.task_id is not None:
            with self._lock:
                task = self._tasks.get(call.task_id)
            if task is not None:
                return task
        return call.parent

    # --- pairing -------------------------------------------------------------------------

    def _start(self, event: Any, call: _Call) -> None:
        call.parent = tracing.current()  # the emitter's: the attempt's span
        call.task_id = event.task_id
        call.started = event.timestamp
        with self._lock:
            half = self._calls.pop(event.event_id, None)
            if half is None:
                self._keep(event.event_id, call)
                return
        call.ended, call.error = half.ended, half.error
        call.attributes.update(half.attributes)
        _record(call)

    def _end(
        self, event: Any, attributes: dict[str, Any], *, error: tuple[str, str] | None = None
    ) -> None:
        key = event.started_event_id
        if key is None:
            return  # CrewAI could not pair it: no start to measure from
        with self._lock:
            call = self._calls.pop(key, None)
            if call is None:  # handled before its start: wait for it
                half = _Call("", "", ended=event.timestamp, attributes=attributes, error=error)
                self._keep(key, half)
                return
        call.ended, call.error = event.timestamp, error
        call.attributes.update(attributes)
        _record(call)

    def _keep(self, key: str, call: _Call) -> None:
        self._calls[key] = call
        while len(self._calls) > MAX_PENDING:
            self._calls.popitem(last=False)


_listener = _Listener()


def _record(call: _Call) -> None:
    """Make the finished call's span (calls outside any traced step are not recorded)."""
    tracer, parent = tracing.tracer(), _listener.parent_of(call)
    if tracer is None or parent is None or call.started is None or call.ended is None:
        return
    from opentelemetry.trace import SpanKind

    span = tracer.start_span(
        call.name,
        context=tracing.otel_context(parent),
        kind=SpanKind.CLIENT if call.kind == "client" else SpanKind.INTERNAL,
        attributes={k: v for k, v in call.attributes.items() if v is not None},
        start_time=_ns(call.started),
    )
    if call.error is not None:
        tracing.failed(span, *call.error)
    span.end(end_time=max(_ns(call.ended), _ns(call.started)))


def _provider_attributes(workflow: WorkflowConfig, step_id: str) -> dict[str, str | None]:
    task = next((t for t in workflow.tasks if t.id == step_id), None)
    if task is None:
        return {}
    provider = workflow.provider(task.agent_provider_id)
    return {
        "agentic.provider": provider.id,
        "agentic.provider_type": _text(provider.type),
        "agentic.model": _text(provider.model),
        "gen_ai.request.model": _text(provider.model),
    }


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000_000)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["attempt", "crew", "ended", "install", "settle", "task_ended"]
