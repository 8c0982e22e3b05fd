"""Rich renderings of runs: the end of `agentic run`, the `runs` table, the `show` report.

Data comes from :mod:`agentic.cli.details`; this module only decides how it looks. Nothing here
is parsed by machines: scripts use the ``--json`` documents instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from agentic.cli.details import ABANDONED, RunDetail, RunListing, StepDetail, worker_label
from agentic.cli.progress import STATUS_STYLES, format_duration, one_line
from agentic.contracts import Usage

if TYPE_CHECKING:
    from agentic.knowledge import TrackRecord

OUTPUT_PREVIEW_CHARS = 400
CELL_CHARS = 60


def stdout_console(*, pipe_width: int = 160) -> Console:
    """The console for stdout: the terminal's width, or ``pipe_width`` in pipes and logs.

    Rich assumes 80 columns without a terminal, which would wrap table rows that scripts
    and ``grep`` expect on one line.
    """
    console = Console()
    return console if console.is_terminal else Console(width=pipe_width)


def format_tokens(usage: Usage) -> str:
    """``1,234 tokens`` plus the cost when known."""
    text = f"{usage.total_tokens:,} tokens"
    if usage.cost_usd is not None:
        text += f" (${usage.cost_usd:.4f})"
    return text


def format_time(value: datetime | None, *, date: bool = True) -> str:
    """Local time, to the second (``2026-01-31 14:02:03``)."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def summary_line(detail: RunDetail) -> Text:
    """``run <id> succeeded in 0.41s · 3/3 steps · 1,234 tokens``."""
    record = detail.record
    text = Text("run ")
    text.append(record.run_id, style="bold")
    text.append(" ")
    text.append(record.status, style=STATUS_STYLES.get(record.status, "bold"))
    elapsed = format_duration(detail.elapsed_s)
    if elapsed:
        text.append(f" in {elapsed}")
    text.append(f" · {detail.steps_succeeded}/{len(detail.steps)} steps")
    text.append(f" · {format_tokens(detail.usage)}")
    return text


def print_run_outcome(console: Console, detail: RunDetail, *, err: Console) -> None:
    """The end of `agentic run`: the final output (or the error), then the summary line.

    The output is rendered as Markdown on a terminal and printed verbatim elsewhere, so a
    pipe receives exactly what the last step produced.
    """
    record, output = detail.record, detail.output
    if record.status == "succeeded" and output is not None:
        console.print()
        structured = detail.output_json
        if console.is_terminal and structured is not None:
            console.print(Panel(_json(structured), title="output (JSON)", title_align="left"))
        elif console.is_terminal:
            console.print(Panel(Markdown(output), title="output", title_align="left"))
        else:
            console.print(output, markup=False, highlight=False, soft_wrap=True)
    elif record.error:
        err.print(f"error: {record.error}", style="red", markup=False, highlight=False)
    console.print()
    console.print(summary_line(detail), highlight=False, soft_wrap=True)
    if console.is_terminal:
        console.print(Text(f"details: agentic show {record.run_id}", style="dim"))


def runs_table(listing: RunListing) -> Table:
    """`agentic runs`: one row per run, newest first."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("run id", "workflow", "status", "backend", "created"):
        table.add_column(name, no_wrap=True)
    table.add_column("duration", justify="right")
    table.add_column("steps ok", justify="right")
    for run in listing.runs:
        steps = f"{run.steps_succeeded}/{run.steps_total}"
        table.add_row(
            run.run_id,
            run.workflow,
            _status(ABANDONED if run.abandoned else run.status),
            run.backend,
            format_time(run.created_at),
            format_duration(run.elapsed_s),
            steps,
        )
    return table


def run_report(detail: RunDetail) -> RenderableType:
    """`agentic show`: header, timeline of every attempt, outputs, artifacts, usage."""
    parts: list[RenderableType] = [_header(detail), Text(), timeline_table(detail)]
    outputs = [_output_panel(step) for step in detail.steps if step.output is not None]
    if outputs:
        parts += [Text(), Text("outputs", style="bold"), *outputs]
        parts.append(Text("full text: --output STEP, or --json", style="dim"))
    artifacts = _artifacts_table(detail)
    if artifacts is not None:
        parts += [Text(), Text("artifacts", style="bold"), artifacts]
    if detail.record.plan:
        parts += [Text(), Text("planner", style="bold"), planner_text(detail.record.plan)]
        parts.append(Text("prompts and raw replies: --json", style="dim"))
    if detail.record.error:
        parts += [Text(), Text(f"error: {detail.record.error}", style="red")]
    parts += [Text(), Text(f"usage: {_usage_text(detail.usage)}")]
    return Group(*parts)


def planner_text(plan: Mapping[str, Any]) -> Text:
    """What the planner did for a goal run: its calls and their verdicts, the planned steps.

    ``plan`` is ``run.json``'s ``plan``: one planning (``replies``, ``plan``) or, for
    ``--iterative``, one per round (``rounds``).
    """
    text = Text()
    rows = [
        ("goal", plan.get("goal")),
        ("planner", plan.get("planner")),
        ("session", plan.get("session")),
    ]
    if plan.get("mode") == "iterative":
        rows.append(("stopped", plan.get("stopped")))
    for name, value in rows:
        if value:
            text.append(f"  {name:<10}", style="dim")
            text.append(f"{value}\n")
    if plan.get("mode") == "iterative":
        for entry in plan.get("rounds") or []:
            label = f"round {entry.get('round', '?')}"
            _append_calls(text, label, entry.get("replies") or [], entry.get("plan"))
            if entry.get("step"):
                status = entry.get("status", "running")
                text.append(f"    ran {entry['step']} as run {entry.get('run_id')}: {status}\n")
    else:
        _append_calls(text, "plan", plan.get("replies") or [], plan.get("plan"))
    if plan.get("error"):
        text.append(f"  error: {plan['error']}\n", style="red")
    text.rstrip()
    return text


def _append_calls(
    text: Text, label: str, replies: Sequence[Mapping[str, Any]], accepted: Any
) -> None:
    for number, reply in enumerate(replies, start=1):
        problems = reply.get("problems") or []
        text.append(f"  {label}, call {number}: ")
        if problems:
            text.append(f"{len(problems)} problem(s): ", style="yellow")
            text.append(f"{one_line(str(problems[0]), CELL_CHARS)}\n")
        else:
            text.append("accepted\n", style="green")
    if isinstance(accepted, Mapping):
        steps = [s for s in accepted.get("steps") or [] if isinstance(s, Mapping)]
        if steps:
            planned = ", ".join(f"{s.get('id')} ({s.get('agent_provider_id')})" for s in steps)
            text.append(f"    steps: {planned}\n")
        if accepted.get("done"):
            text.append("    the planner said the goal is done\n")


def _header(detail: RunDetail) -> Text:
    record = detail.record
    text = summary_line(detail)
    rows = [
        ("workflow", record.workflow.name if record.workflow else "?"),
        ("backend", record.backend),
        ("created", format_time(record.created_at)),
        ("finished", format_time(record.finished_at)),
        ("replay of", record.replay_of or ""),
        ("inputs", ", ".join(f"{k}={v}" for k, v in record.inputs.items())),
        ("labels", ", ".join(f"{k}={v}" for k, v in record.labels.items())),
        ("review", _review_line(record.review)),
    ]
    for name, value in rows:
        if value:
            text.append(f"\n  {name:<10}", style="dim")
            text.append(value)
    driver = record.driver
    if detail.abandoned and driver is not None:
        text.append(f"\n  {ABANDONED:<10}", style="dim")
        text.append(
            f"the process that drove it (pid {driver.pid} on {driver.host}) is gone; "
            f"`agentic replay {record.run_id}` resumes it, reusing every committed result",
            style=STATUS_STYLES[ABANDONED],
        )
    return text


def stats_table(records: Sequence[TrackRecord], min_success_rate: float, min_steps: int) -> Table:
    """``agentic stats``: one row per provider; a flagged one's rate in red."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    names = ("provider", "model", "runs", "attempts", "success", "retries", "median", "p95")
    for name in (*names, "tokens/step", "cost/step", "review"):
        right = name not in ("provider", "model")
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    table.add_column("last failure", overflow="ellipsis", no_wrap=True, max_width=CELL_CHARS)
    for r in records:
        flagged = r.flagged(min_success_rate=min_success_rate, min_steps=min_steps)
        table.add_row(
            r.provider,
            r.model or "",
            str(r.runs),
            str(r.attempts),
            Text(f"{r.success_rate:.0%}" + (" flagged" if flagged else ""),
                 style="red" if flagged else ""),
            str(r.retries),
            format_duration(r.median_s),
            format_duration(r.p95_s),
            f"{r.tokens_per_step:,.0f}" if r.tokens_per_step is not None else "",
            f"${r.cost_per_step:.4f}" if r.cost_per_step is not None else "",
            f"{r.review_score:.1f}" if r.review_score is not None else "",
            Text(" ".join((r.last_failure or "").split()), style="dim"),
        )  # fmt: skip
    return table


def _review_line(review: Mapping[str, Any] | None) -> str:
    if not review:
        return ""
    score = review.get("score")
    shown = f"{score:g}/10" if isinstance(score, int | float) else "no score"
    minimum = review.get("min_score")
    verdict = "passed" if review.get("passed") else "failed"
    limit = f", min {minimum:g}" if isinstance(minimum, int | float) else ""
    reasons = "; ".join(str(r) for r in review.get("reasons") or [])
    line = f"{shown} by {review.get('provider')} ({verdict}{limit})"
    return one_line(f"{line}: {reasons}" if reasons else line, 200)


def timeline_table(detail: RunDetail) -> Table:
    """Every attempt of every step: status, start, duration, provider, worker, tokens, error."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    names = ("step", "attempt", "status", "started", "duration", "provider", "worker", "tokens")
    for name in names:
        right = name in ("attempt", "duration", "tokens")
        table.add_column(name, justify="right" if right else "left", no_wrap=True)
    table.add_column("cost", justify="right")
    table.add_column("error / note", overflow="ellipsis", no_wrap=True, max_width=CELL_CHARS)
    for step in detail.steps:
        _add_step_rows(table, step)
    return table


def _add_step_rows(table: Table, step: StepDetail) -> None:
    blank = [""] * 7
    results = step.attempts or ([step.result] if step.result is not None else [])
    if not results:
        table.add_row(step.step_id, "", _status(step.status), *blank)
        return
    for index, result in enumerate(results):
        note = ""
        if result.error is not None:
            note = f"{result.error.type}: {result.error.message}"
        elif result.reused_from:
            note = f"reused from {result.reused_from}"
        usage = result.usage if result.reused_from is None else Usage()
        table.add_row(
            step.step_id if index == 0 else "",
            str(result.attempt),
            _status(result.status),
            format_time(result.timing.started_at, date=False),
            format_duration(result.timing.duration_s),
            result.provider or "",
            worker_label(result),
            f"{usage.total_tokens:,}",
            f"${usage.cost_usd:.4f}" if usage.cost_usd is not None else "",
            Text(" ".join(note.split()), style="red" if result.error else "dim"),
        )
    if step.status != results[-1].status:
        # The step ended otherwise than its last attempt (cancelled while retrying, …).
        table.add_row("", "", _status(step.status), *blank)


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def _output_panel(step: StepDetail) -> Panel:
    output = step.output or ""
    kind = ""
    if step.output_json is not None:  # an output_schema's answer: indented, one key a line
        output, kind = json.dumps(step.output_json, ensure_ascii=False, indent=2), "JSON, "
    shown = output if len(output) <= OUTPUT_PREVIEW_CHARS else output[:OUTPUT_PREVIEW_CHARS] + "…"
    title = f"{step.step_id} ({kind}{len(output):,} chars)"
    return Panel(Text(shown.rstrip()), title=title, title_align="left", border_style="dim")


def _json(value: Mapping[str, Any]) -> RenderableType:
    """A JSON answer, indented and highlighted."""
    from rich.json import JSON

    return JSON.from_data(value, ensure_ascii=False)


def _artifacts_table(detail: RunDetail) -> Table | None:
    rows = [(step.step_id, a) for step in detail.steps for a in step.artifacts]
    if not rows:
        return None
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("path")
    table.add_column("mime", style="dim")
    table.add_column("size", justify="right")
    for step_id, artifact in rows:
        table.add_row(f"{step_id}/{artifact.path}", artifact.mime, f"{artifact.size:,} B")
    return table


def _usage_text(usage: Usage) -> str:
    text = (
        f"{usage.total_tokens:,} tokens (prompt {usage.prompt_tokens:,}, "
        f"completion {usage.completion_tokens:,})"
    )
    if usage.cost_usd is not None:
        text += f", cost ${usage.cost_usd:.4f}"
    return text
