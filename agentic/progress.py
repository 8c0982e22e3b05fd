"""Live progress of a run: run events folded into one row per step, shown two ways.

* :class:`LiveProgress` (a terminal): a table of steps updated in place, with a ticking
  duration for running steps.
* :class:`PlainProgress` (CI logs, pipes): one line per event, nothing rewritten.

Both take events from any thread (a backend may report from its own loop) and are fed by
:func:`agentic.submit.run_to_completion`'s ``on_start`` / ``on_event`` callbacks::

    with progress_reporter(console) as progress:
        record = run_to_completion(request, settings, progress.on_event, on_start=progress.start)
        progress.finish(record)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from types import TracebackType
from typing import Any

from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from agentic.contracts import RunEvent, RunRecord, utcnow

NOTE_CHARS = 60
STATUS_STYLES = {
    "pending": "dim",
    "ready": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "red dim",
    "skipped": "dim",
}
ACTIVE = ("ready", "running")


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

    def duration_s(self, now: datetime) -> float | None:
        """Seconds the current attempt has run (so far, while it runs)."""
        begin = self.started_at or self.ready_at
        if begin is None:
            return None
        end = self.finished_at or (now if self.status in ACTIVE else None)
        return None if end is None else max(0.0, (end - begin).total_seconds())


class RunProgress:
    """A run's steps as its events describe them; safe to update from several threads."""

    def __init__(self, step_ids: Iterable[str] = (), *, run_id: str | None = None) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, StepRow] = {s: StepRow(s) for s in step_ids}
        self.run_id = run_id
        self.workflow: str | None = None
        self.status = "pending"

    def start(self, record: RunRecord) -> None:
        """Show every step of ``record`` (as pending until its events arrive)."""
        with self._lock:
            self.run_id = record.run_id
            self.workflow = record.workflow.name if record.workflow else None
            self.status = record.status
            for step in record.steps:
                self._rows.setdefault(step.step_id, StepRow(step.step_id))

    def apply(self, event: RunEvent) -> StepRow | None:
        """Fold ``event`` in; return the updated row of a step event."""
        with self._lock:
            self.run_id = self.run_id or event.run_id
            if event.step_id is None:
                if event.type in ("succeeded", "failed", "cancelled"):
                    self.status = event.type
                elif event.type in ("requested", "planned"):
                    self.status = "running"
                return None
            row = self._rows.get(event.step_id) or StepRow(event.step_id)
            row = _next_row(row, event)
            self._rows[event.step_id] = row
            return row

    def finish(self, record: RunRecord) -> None:
        """Take the final step states from the finished record (events may have been lost)."""
        with self._lock:
            self.status = record.status
            now = record.finished_at or utcnow()
            for step in record.steps:
                row = self._rows.get(step.step_id) or StepRow(step.step_id)
                update: dict[str, Any] = {"status": step.status}
                if step.attempt:
                    update["attempt"] = step.attempt
                if step.status not in ACTIVE and row.status in ACTIVE:
                    update["finished_at"] = now  # a step stopped by cancel stops its clock
                self._rows[step.step_id] = replace(row, **update)

    def rows(self) -> list[StepRow]:
        """The rows, in the order steps were first seen (the workflow's order after start)."""
        with self._lock:
            return list(self._rows.values())


def _next_row(row: StepRow, event: RunEvent) -> StepRow:
    data, ts, attempt = event.data, event.ts, event.attempt or row.attempt
    if event.type == "step_ready":
        return replace(
            row, status="ready", attempt=attempt, ready_at=ts, started_at=None,
            finished_at=None, note="",
        )  # fmt: skip
    if event.type == "step_started":
        return replace(row, status="running", attempt=attempt, started_at=ts, finished_at=None)
    if event.type == "step_progress":
        return replace(row, note=one_line(str(data.get("message") or data.get("note") or "")))
    if event.type == "step_succeeded":
        note = (
            f"reused from {data.get('reused_from') or 'an earlier run'}"
            if data.get("reused")
            else ""
        )
        return replace(row, status="succeeded", attempt=attempt, finished_at=ts, note=note)
    if event.type == "step_failed":
        return replace(
            row, status="failed", attempt=attempt, finished_at=ts, note=_error_note(data)
        )
    if event.type == "step_retrying":
        delay = float(data.get("delay_s") or 0.0)
        return replace(row, status="retrying", note=one_line(f"retry in {delay:.1f}s; {row.note}"))
    return row


def _error_note(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return one_line(f"{error.get('type', 'Error')}: {error.get('message', '')}")
    return one_line(str(error or "failed"))


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
        if event.type in ("succeeded", "failed", "cancelled"):
            error = event.data.get("error")
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
    if row.note and event.type != "step_ready":
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
        )

    def __enter__(self) -> LiveProgress:
        self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._live.stop()

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
