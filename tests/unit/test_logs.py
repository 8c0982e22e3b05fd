"""Log lines (agentic.logs): text or JSON, the run/step/attempt of the context on every
record whatever logger made it, secrets masked in both formats."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import sys
import threading
from collections.abc import Iterator

import pytest
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live

from agentic import logs, redact
from agentic.cli.above import LinesAbove
from agentic.cli.progress import LiveProgress
from agentic.cli.relay import relay
from agentic.settings import Settings

SECRET = "sk-log-secret-4242"
LIBRARIES = ["crewai", "LiteLLM", "litellm", "httpx", "root"]


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def configured(fmt: logs.LogFormat, level: str = "INFO") -> io.StringIO:
    stream = io.StringIO()
    logs.configure(level, fmt, stream=stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_line_carries_the_ids_of_the_step_for_every_library_logger() -> None:
    stream = configured("json")
    with logs.log_context(run_id="r1", step_id="draft", attempt=2):
        for name in LIBRARIES:
            logging.getLogger(None if name == "root" else name).error("trouble in %s", name)
    logging.getLogger("crewai").warning("between runs")

    lines = json_lines(stream)
    assert [(line["logger"], line["message"]) for line in lines[:-1]] == [
        (name, f"trouble in {name}") for name in LIBRARIES
    ]
    for line in lines[:-1]:
        assert list(line)[:4] == ["time", "level", "logger", "message"]
        assert (line["level"], line["run_id"], line["step_id"], line["attempt"]) == (
            "ERROR",
            "r1",
            "draft",
            2,
        )
        assert str(line["time"]).endswith("+00:00")
    assert lines[-1]["message"] == "between runs"
    assert not {"run_id", "step_id", "attempt", "trace_id"} & set(lines[-1])


def test_a_text_line_names_the_run_step_and_attempt_before_the_message() -> None:
    stream = configured("text")
    with logs.log_context(run_id="r1", step_id="draft", attempt=1):
        logging.getLogger("httpx").warning("HTTP Request: POST /v1 500")
    logging.getLogger("agentic.x").warning("no step here")
    first, second = stream.getvalue().splitlines()
    assert first.endswith(
        " WARNING httpx run_id=r1 step_id=draft attempt=1: HTTP Request: POST /v1 500"
    )
    assert second.endswith(" WARNING agentic.x: no step here")


def test_a_traceback_is_the_exc_field_of_its_json_line() -> None:
    stream = configured("json")
    try:
        raise ValueError("the model said no")
    except ValueError:
        logging.getLogger("crewai").exception("kickoff failed")
    (line,) = json_lines(stream)
    assert line["message"] == "kickoff failed"
    assert "ValueError: the model said no" in str(line["exc"])
    assert list(line)[-1] == "exc"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_secret_never_reaches_a_log_line_in_either_format(fmt: logs.LogFormat) -> None:
    redact.current().add([SECRET])
    stream = configured(fmt)
    log = logging.getLogger("LiteLLM")
    with logs.log_context(run_id="r1", step_id="s", attempt=1):
        log.error("key %s refused", SECRET)
        log.warning("request failed", extra={"headers": {"Authorization": f"Bearer {SECRET}"}})
        try:
            raise RuntimeError(f"echo {SECRET}")
        except RuntimeError:
            log.exception("call failed")
    written = stream.getvalue()
    assert SECRET not in written
    assert "key *** refused" in written and "RuntimeError: echo ***" in written
    if fmt == "json":  # a library's extra fields are written too
        assert json_lines(stream)[1]["headers"] == {"Authorization": f"Bearer {redact.MASK}"}


def test_an_inner_context_keeps_what_it_does_not_replace_and_ends_with_its_block() -> None:
    with logs.log_context(run_id="r1", trace_id="t1"):
        with logs.log_context(step_id="a", attempt=3):
            assert logs.current_context().fields() == {
                "run_id": "r1",
                "step_id": "a",
                "attempt": 3,
                "trace_id": "t1",
            }
            with logs.log_context(step_id="b"):  # another step: a's attempt is not b's
                assert logs.current_context().fields() == {
                    "run_id": "r1",
                    "step_id": "b",
                    "trace_id": "t1",
                }
        with logs.log_context(run_id="r2"):  # another run: none of r1's steps
            assert logs.current_context().fields() == {"run_id": "r2", "trace_id": "t1"}
        assert logs.current_context().fields() == {"run_id": "r1", "trace_id": "t1"}
    assert logs.current_context().fields() == {}


def test_a_crew_context_names_the_step_running_when_each_record_is_logged() -> None:
    stream = configured("json")
    running: list[tuple[str, int] | None] = [("first", 1)]
    with logs.log_context(run_id="r1", current_step=lambda: running[0]):
        logging.getLogger("crewai").info("one")
        running[0] = ("second", 2)
        logging.getLogger("crewai").info("two")
        running[0] = None
        logging.getLogger("crewai").info("after")
    assert [(x.get("step_id"), x.get("attempt")) for x in json_lines(stream)] == [
        ("first", 1),
        ("second", 2),
        (None, None),
    ]


def test_threads_and_tasks_started_with_the_context_log_its_ids() -> None:
    stream = configured("json")

    async def in_a_task() -> None:
        await asyncio.sleep(0)
        logging.getLogger("agentic.task").info("from a task")

    with logs.log_context(run_id="r1", step_id="s", attempt=1):
        thread = threading.Thread(
            target=contextvars.copy_context().run,
            args=(logging.getLogger("crewai").info, "from a thread"),
        )
        thread.start()
        thread.join()
        asyncio.run(in_a_task())
    assert [(x["message"], x["step_id"]) for x in json_lines(stream)] == [
        ("from a thread", "s"),
        ("from a task", "s"),
    ]


def test_in_step_context_tags_what_the_function_logs_with_its_spec() -> None:
    class Spec:
        run_id, step_id, attempt = "r9", "write", 4

    @logs.in_step_context
    def execute(spec: Spec) -> str:
        logging.getLogger("crewai").info("inside")
        return "done"

    stream = configured("json")
    assert execute(Spec()) == "done"
    (line,) = json_lines(stream)
    assert (line["run_id"], line["step_id"], line["attempt"]) == ("r9", "write", 4)


def test_configure_replaces_stream_handlers_keeps_others_and_adopts_library_handlers() -> None:
    root = logging.getLogger()
    logging.basicConfig(stream=io.StringIO(), force=True)  # what a library might have done
    keeper = logging.NullHandler()
    root.addHandler(keeper)
    own = logging.StreamHandler(io.StringIO())
    logging.getLogger("LiteLLM").addHandler(own)
    try:
        handler = logs.configure("INFO", "text")
        plain = [h for h in root.handlers if type(h) is logging.StreamHandler]
        assert plain == [] and keeper in root.handlers and handler in root.handlers
        assert own not in logging.getLogger("LiteLLM").handlers
        assert any(isinstance(f, redact.RedactingFilter) for f in handler.filters)
        again = logs.configure("WARNING", "json")
        assert handler not in root.handlers and again in root.handlers
        assert root.level == logging.WARNING
    finally:
        root.removeHandler(keeper)
        logging.getLogger("LiteLLM").removeHandler(own)


def test_log_lines_go_to_the_stderr_of_the_moment_so_a_live_display_shows_them_above_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    logs.configure("INFO", "text")
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    with Live("TABLE", console=console, redirect_stderr=True, auto_refresh=False):
        logging.getLogger().error("ERROR from a library")
    assert terminal.getvalue() == ""  # nothing past the live display
    shown = screen.getvalue()
    assert "ERROR from a library" in shown
    assert shown.index("ERROR from a library") < shown.rindex("TABLE")


def test_a_library_console_logs_and_prints_show_above_the_live_table_not_through_it() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100, color_system=None)
    library_console = Console()  # writes to sys.stdout of the moment, as CrewAI's does
    logs.configure("INFO", "text")
    with LiveProgress(console, refresh_per_s=1):
        library_console.print("PANEL from a library console")
        logging.getLogger("crewai").error("ERROR from a library")
        print("a plain print", end="")  # a line completed only when the table ends
    shown = screen.getvalue()
    table = shown.rindex("status")  # the table as drawn last
    for text in ("PANEL from a library console", "ERROR from a library"):
        assert text in shown and shown.index(text) < table
    assert "a plain print" in shown
    assert sys.stdout is not None and not isinstance(sys.stdout, LinesAbove)


def test_the_relay_writes_each_line_of_a_step_process_to_stderr_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    redact.current().add([SECRET])
    terminal = io.StringIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    read_end, write_end = os.pipe()
    os.write(write_end, f"ERROR:root:key {SECRET}\nhalf a ".encode())
    os.write(write_end, b"line\nno newline at the end")
    os.close(write_end)
    relay(read_end)
    assert terminal.getvalue().splitlines() == [
        f"ERROR:root:key {redact.MASK}",
        "half a line",
        "no newline at the end",
    ]


def test_the_log_format_setting_is_text_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("AGENTIC_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError, match="log_format"):
        Settings()
    assert logs.configure_from_settings() in logging.getLogger().handlers  # falls back
