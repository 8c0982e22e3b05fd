"""Behaviour every command shares: bad configuration or input is one red line and exit 2."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console

from agentic import redact
from agentic.contracts.base import first_error
from agentic.errors import ConfigError
from agentic.settings import Settings, get_settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

StoreOpt = Annotated[
    str | None, typer.Option("--store", help="Run store URL (default: AGENTIC_RUN_STORE_URL).")
]
"""``--store``, of every command that reads or writes runs."""
ResultJsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document at the end, nothing else.")
]
"""``--json`` of the commands that wait for a run (``run``, ``replay``)."""


def print_error(message: str) -> None:
    """One red line on stderr, never wrapped and never parsed as rich markup.

    Red only on a terminal (or with ``FORCE_COLOR``); ``NO_COLOR`` is honoured.
    """
    # A console per call sees the current stderr and colour variables (tests swap both).
    console = Console(stderr=True)
    # Messages hold field paths like `tasks[0]`, which rich would take for markup.
    shown = redact.current().text(message)
    console.print(f"error: {shown}", style="red", markup=False, highlight=False, soft_wrap=True)


@contextlib.contextmanager
def config_errors() -> Iterator[None]:
    """Turn a :class:`ConfigError` into one red line on stderr and exit code 2.

    Works as a context manager or as a decorator on a command::

        @app.command()
        @config_errors()
        def run(...): ...
    """
    try:
        yield
    except ConfigError as exc:
        print_error(str(exc))
        raise typer.Exit(EXIT_USAGE) from exc


def load_settings(**overrides: object) -> Settings:
    """The settings, with a bad ``AGENTIC_*`` value reported as a :class:`ConfigError`."""
    try:
        return get_settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid setting: {first_error(exc)}") from exc
    except SettingsError as exc:  # a value that is not valid JSON for a list or dict field
        raise ConfigError(f"invalid setting: {exc}") from exc


class Isolation(StrEnum):
    """``agentic worker --isolation``."""

    process = "process"
    thread = "thread"


IsolationOption = Annotated[
    Isolation | None,
    typer.Option(
        "--isolation",
        help="process: a warm step process per slot; cancel and timeout kill the step at "
        "once. thread: steps as threads of one shared host process, for I/O-bound (LLM) "
        "pools such as --concurrency 64 on 2 cores; a thread cannot be killed, so a "
        "cancelled or timed-out step is dropped at once but runs on until its host is "
        "recycled, and a crashing step takes the host's other steps along (they are "
        "redelivered). Default: AGENTIC_STEP_ISOLATION (process).",
        show_default=False,
    ),
]
