"""Log lines of real steps: what CrewAI and other libraries log while a step runs carries the
run, step and attempt, in this process and in a worker's step process, and never breaks the
live progress table of `agentic run` on a terminal.

The catalog is ``tests/fixtures/noisy_steps``: step ``first`` calls a tool that logs on the
root, ``httpx`` and ``LiteLLM`` loggers and prints; step ``second``'s model fails, so CrewAI
logs an error of its own.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pty
import re
import select
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentic import logs
from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import StepResult
from agentic.errors import StepFailure
from tests.factories import REPO

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)  # CrewAI's own package layout
    from agentic.runtime import run_workflow_inprocess

pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]

FIXTURE = REPO / "tests" / "fixtures" / "noisy_steps"
LIBRARY_LINES = {
    "root": "library trouble while handling queues",
    "httpx": "HTTP Request: POST http://model/v1 500",
    "LiteLLM": "LiteLLM call failed",
}


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """This process logs JSON lines at INFO into the stream yielded."""
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(FIXTURE))  # where the step finds its tool
    monkeypatch.delenv("AGENTIC_EXTRA_CONFIG_DIRS", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    logs.configure("INFO", "json", stream=stream)
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def test_what_libraries_and_crewai_log_in_an_inprocess_crew_names_the_step_that_runs(
    json_logs: io.StringIO,
) -> None:
    reported: list[StepResult] = []
    with pytest.raises(StepFailure):
        run_workflow_inprocess(
            load_workflow("noisy", load_catalog([FIXTURE])),
            run_id="r-logs",
            inputs={},
            on_step=reported.append,
            attempts={"second": 2},
        )
    assert [(r.step_id, r.status) for r in reported] == [
        ("first", "succeeded"),
        ("second", "failed"),
    ]
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    by_message = {line["message"]: line for line in lines}
    for logger, message in LIBRARY_LINES.items():
        line = by_message[message]
        assert (line["logger"], line["run_id"], line["step_id"], line["attempt"]) == (
            logger,
            "r-logs",
            "first",
            1,
        )
    crewai = [x for x in lines if x["logger"].startswith("crewai") and x["level"] == "ERROR"]
    assert crewai, lines  # CrewAI's own record of the failed model call
    assert {(x["run_id"], x["step_id"], x["attempt"]) for x in crewai} == {("r-logs", "second", 2)}


# --- the live table in a real terminal ------------------------------------------------------


def screen(output: str) -> list[str]:
    """The lines a terminal shows after ``output``: the few controls rich's live display
    uses (CR, LF, erase line, cursor up); colours and other sequences are ignored."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", output):
        if token == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            code, arg = token[-1], token[2:-1]
            if code == "A":
                row = max(0, row - int(arg or 1))
            elif code == "K":
                lines[row] = "" if arg == "2" else lines[row][:col]
                col = 0 if arg == "2" else col
        elif token:
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return [line.rstrip() for line in lines]


def run_in_a_terminal(
    args: list[str], env: dict[str, str], timeout_s: float = 90
) -> tuple[int, str]:
    """Run ``args`` with a pseudo-terminal as stdin, stdout and stderr; its exit code and
    everything it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: nothing of pytest's may run here
        try:
            os.execve(args[0], args, env)
        finally:
            os._exit(127)
    output, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode("utf-8", errors="replace")


def test_library_output_of_a_nats_step_shows_above_the_live_table_which_it_never_breaks(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_CONFIG_DIR=str(FIXTURE),
        AGENTIC_LOG_FORMAT="json",
        PYTHONPATH=str(REPO),  # the tool's module, in the worker's step process
        COLUMNS="400",  # one JSON line, one row
        LINES="50",
        TERM="xterm",
        CREWAI_DISABLE_TELEMETRY="true",
    )
    args = [sys.executable, "-m", "agentic", "run", "noisy", "--backend", "nats"]
    code, output = run_in_a_terminal([*args, "--store", str(tmp_path / "store")], env)

    shown = screen(output)
    assert code == 1, "\n".join(shown)
    headers = [i for i, line in enumerate(shown) if re.match(r"\s+step\s+status\s+attempt", line)]
    assert len(headers) == 1, "\n".join(shown)  # a broken table leaves stale copies behind
    (header,) = headers
    assert shown[header - 1].startswith("noisy · run-")
    assert re.match(r"✓\s+first\s+succeeded\s+1", shown[header + 1]), "\n".join(shown)
    assert re.match(r"✗\s+second\s+failed\s+1", shown[header + 2]), "\n".join(shown)
    above = shown[: header - 1]
    assert "a library print on stdout" in above and "a library print on stderr" in above
    records = [json.loads(line) for line in above if line.startswith("{")]
    by_message = {record["message"]: record for record in records}
    run_id = shown[header - 1].removeprefix("noisy · ")
    for logger, message in LIBRARY_LINES.items():
        record = by_message[message]
        assert (record["logger"], record["run_id"], record["step_id"]) == (logger, run_id, "first")
    assert any(r["logger"].startswith("crewai") and r["step_id"] == "second" for r in records), (
        records
    )
