"""Live progress of a run: run events folded into one row per step, shown two ways.

* :class:`LiveProgress` (a terminal): a table of steps updated in place, with a ticking
  duration for running steps.
* :class:`PlainProgress` (CI logs, pipes): one line per event, nothing rewritten.

Both take events from any thread (a backend may report from its own loop) and are fed by
:func:`agentic.execution.run_to_completion`'s ``on_start`` / ``on_event`` callbacks::

    with progress_reporter(console) as progress:
        record = run_to_completion(request, settings, progress.on_event, on_start=progress.start)
        progress.finish(record)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from agentic.cli.above import printed_above
from agentic.contracts import (
    TERMINAL_EVENTS,
    RunEvent,
    RunRecord,
    RunStatus,
    RunView,
    StepError,
    StepView,
    end_details,
    utcnow,
)
from agentic.contracts.fold import ACTIVE, apply, settled

NOTE_CHARS = 60
STATUS_STYLES = {
    "pending": "dim",
    "ready": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "red dim",
    "abandoned": "red",
    "skipped": "dim",
}


@dataclass(frozen=True)
class StepRow:
    """What the progress view shows for one step."""

    step_id: str
    status: str = "pending"
    attempt: int = 0
    ready_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    note: str = ""
    recorded_s: float | None = None

    @classmethod
    def of(cls, step: StepView) -> StepRow:
        """The row of a step as the run's events left it."""
        return cls(
            step_id=step.step_id,
            status=step.status,
            attempt=step.attempt,
            ready_at=step.ready_at,
            started_at=step.started_at,
            finished_at=step.finished_at,
            note=step_note(step),
            recorded_s=step.duration_s,
        )

    def duration_s(self, now: datetime) -> float | None:
        """Seconds the current attempt has run (so far, while it runs).

        An attempt that ended takes the duration its result records (``agentic show``'s),
        when the event that ended it says; else the time between its events.
        """
        if self.recorded_s is not None and self.status not in ACTIVE:
            return self.recorded_s
        begin = self.started_at or self.ready_at
        if begin is None:
            return None
        end = self.finished_at or (now if self.status in ACTIVE else None)
        return None if end is None else max(0.0, (end - begin).total_seconds())


class RunProgress:
    """A run's steps as its events describe them (:mod:`agentic.contracts.fold`); safe to
    update from several threads."""

    def __init__(self, step_ids: Iterable[str] = (), *, run_id: str | None = None) -> None:
        self._lock = threading.Lock()
        self._view = RunView(run_id=run_id).with_steps(step_ids)
        self.workflow: str | None = None

    @property
    def run_id(self) -> str | None:
        return self._view.run_id

    @property
    def status(self) -> RunStatus:
        return self._view.status

    def start(self, record: RunRecord) -> None:
        """Show every step of ``record`` (as the record has it until its events arrive)."""
        with self._lock:
            self.workflow = record.workflow.name if record.workflow else None
            known = RunView.of(record)
            # Steps already seen in events keep what the events said.
            self._view = replace(known, steps={**known.steps, **self._view.steps})

    def apply(self, event: RunEvent) -> StepRow | None:
        """Fold ``event`` in; return the updated row of a step event the fold took."""
        with self._lock:
            before, self._view = self._view, apply(self._view, event)
            if event.step_id is None or self._view is before:
                return None  # a run event, or one the fold ignored (late, or of an old attempt)
            return StepRow.of(self._view.steps[event.step_id])

    def finish(self, record: RunRecord) -> None:
        """Take the final step states from the finished record (events may have been lost)."""
        with self._lock:
            self._view = settled(self._view, record, at=record.finished_at or utcnow())

    def rows(self) -> list[StepRow]:
        """The rows, in the order steps were first seen (the workflow's order after start)."""
        with self._lock:
            return [StepRow.of(step) for step in self._view.steps.values()]


def step_note(step: StepView) -> str:
    """The note column: why a step failed or waits, where a reused result came from, or
    what a running step last said."""
    if step.status == "succeeded":
        return f"reused from {step.reused_from or 'an earlier run'}" if step.reused else ""
    if step.status == "retrying":
        delay = step.retry_delay_s or 0.0
        return one_line(f"retry in {delay:.1f}s; {_error_note(step.error)}")
    if step.status == "failed":
        return _error_note(step.error)
    if step.fallback and step.status in ("ready", "running"):
        said = f"; {step.message}" if step.message else ""
        return one_line(f"on fallback provider {step.fallback}{said}")
    return one_line(step.message)


def _error_note(error: StepError | None) -> str:
    return one_line(f"{error.type}: {error.message}") if error is not None else "failed"


def one_line(text: str, limit: int = NOTE_CHARS) -> str:
    """``text`` on one line (runs of white space folded), cut to ``limit`` with "…"."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def format_duration(seconds: float | None) -> str:
    """``0.05s``, ``12.3s``, ``4m05s``, ``2h03m``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        minutes, secs = divmod(int(seconds), 60)
        return f"{minutes}m{secs:02d}s"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours}h{rest // 60:02d}m"


def plain_line(event: RunEvent, row: StepRow | None) -> str | None:
    """The log line of one event (``None`` for events not worth a line)."""
    clock = event.ts.astimezone().strftime("%H:%M:%S")
    if row is None:
        if event.type in TERMINAL_EVENTS:
            error = end_details(event)[1]
            return f"{clock} run {event.run_id} {event.type}" + (f": {error}" if error else "")
        if event.type in ("requested", "planned"):
            return f"{clock} run {event.run_id} {event.type}"
        return None
    text = f"{clock} {row.step_id} {event.type.removeprefix('step_')}"
    if event.attempt:
        text += f" (attempt {event.attempt})"
    if event.type in ("step_succeeded", "step_failed"):
        duration = format_duration(row.duration_s(event.ts))
        text += f" in {duration}" if duration else ""
    if row.note and (event.type != "step_ready" or row.status == "ready"):
        text += f": {row.note}"
    return text


class PlainProgress:
    """One line per event on ``console``: for logs and pipes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = RunProgress()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def start(self, record: RunRecord) -> None:
        """Announce the run and its steps."""
        self.progress.start(record)
        steps = ", ".join(s.step_id for s in record.steps)
        self.console.print(
            f"run {record.run_id} on {record.backend}: {steps}", markup=False, highlight=False
        )

    def on_event(self, event: RunEvent) -> None:
        """Print the event's line."""
        line = plain_line(event, self.progress.apply(event))
        if line is not None:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def finish(self, record: RunRecord) -> None:
        """Nothing to redraw: every event already has its line."""
        self.progress.finish(record)


class LiveProgress:
    """A table of steps redrawn in place on a terminal."""

    def __init__(
        self, console: Console, *, clock: Callable[[], datetime] = utcnow, refresh_per_s: int = 8
    ) -> None:
        self.console = console
        self.progress = RunProgress()
        self._clock = clock
        self._spinners: dict[str, Spinner] = {}
        self._live = Live(
            console=console,
            get_renderable=self.render,
            refresh_per_second=refresh_per_s,
            transient=False,
            # printed_above redirects both, for every console (rich's own redirection
            # lets another rich console, CrewAI's, write through the table).
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._above = contextlib.ExitStack()

    def __enter__(self) -> LiveProgress:
        self._above.enter_context(printed_above(self.console))
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self._live.stop()
        finally:
            self._above.close()

    def start(self, record: RunRecord) -> None:
        """Show every step as pending."""
        self.progress.start(record)
        self._live.refresh()

    def on_event(self, event: RunEvent) -> None:
        """Update the table at once (the timer refreshes running durations in between)."""
        self.progress.apply(event)
        self._live.refresh()

    def finish(self, record: RunRecord) -> None:
        """Draw the final states."""
        self.progress.finish(record)
        self._live.refresh()

    def render(self) -> RenderableType:
        """The table as it is now."""
        return progress_table(self.progress, self._clock(), self._spinner)

    def _spinner(self, step_id: str) -> Spinner:
        # One spinner per step: a new one each frame would always draw its first frame.
        return self._spinners.setdefault(step_id, Spinner("dots", style="yellow"))


def progress_table(
    progress: RunProgress,
    now: datetime,
    spinner: Callable[[str], RenderableType] | None = None,
) -> Table:
    """The steps of ``progress`` as a rich table (step, status, attempt, duration, note)."""
    title = " · ".join(x for x in (progress.workflow, progress.run_id) if x)
    table = Table(title=title or None, title_justify="left", box=None, pad_edge=False)
    table.add_column("", width=1)
    table.add_column("step", style="bold")
    table.add_column("status")
    table.add_column("attempt", justify="right")
    table.add_column("duration", justify="right")
    table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=NOTE_CHARS)
    for row in progress.rows():
        marker: RenderableType = _MARKERS.get(row.status, Text(" "))
        if row.status in ACTIVE and spinner is not None:
            marker = spinner(row.step_id)
        table.add_row(
            marker,
            row.step_id,
            Text(row.status, style=STATUS_STYLES.get(row.status, "")),
            str(row.attempt) if row.attempt else "",
            format_duration(row.duration_s(now)),
            Text(row.note, style="dim"),
        )
    return table


_MARKERS: dict[str, RenderableType] = {
    "succeeded": Text("✓", style="green"),
    "failed": Text("✗", style="red"),
    "retrying": Text("↻", style="magenta"),
    "cancelled": Text("■", style="red dim"),
    "skipped": Text("-", style="dim"),
    "pending": Text("·", style="dim"),
}


def progress_reporter(
    console: Console, *, live: bool | None = None
) -> LiveProgress | PlainProgress:
    """A live table on a terminal, plain lines otherwise (``live`` forces either)."""
    if live is None:
        live = console.is_terminal and not console.is_dumb_terminal
    return LiveProgress(console) if live else PlainProgress(console)
