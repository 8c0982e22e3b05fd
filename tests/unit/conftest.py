"""Unit tests run in the test interpreter alone: starting a process fails the test.

Every way Python starts one is refused while a unit test sets up, runs and tears down
(fixtures of every scope included): ``subprocess`` (and so ``asyncio`` subprocesses and
``os.popen``), ``multiprocessing`` and ``concurrent.futures`` process pools, ``os.fork``,
``os.posix_spawn`` and ``os.system``. Each refusal is also recorded, so a test fails even when
the code under test catches the error. A test that needs a process (an interpreter, kubectl,
nats-server, the Kubernetes API double, an MCP server over stdio, ...) belongs in
tests/integration, marked ``procs``.
"""

from __future__ import annotations

import _posixsubprocess
import multiprocessing.process
import os
import subprocess
from collections.abc import Callable, Generator
from typing import Any

import pytest


class ProcessStartRefused(RuntimeError):
    """A unit test tried to start a process."""


def _refusing(item: pytest.Item, refused: list[str], what: str) -> Callable[..., Any]:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        # Popen._execute_child(self, args, ...): name the command line.
        detail = f"{what} {args[1]!s:.200}" if what == "subprocess" else what
        refused.append(detail)
        raise ProcessStartRefused(
            f"{item.nodeid} started a process: {detail}. Unit tests run in-process only; "
            "move the test to tests/integration and mark it procs."
        )

    return refuse


def _guard(item: pytest.Item, refused: list[str]) -> pytest.MonkeyPatch:
    patch = pytest.MonkeyPatch()
    patch.setattr(subprocess.Popen, "_execute_child", _refusing(item, refused, "subprocess"))
    patch.setattr(multiprocessing.process.BaseProcess, "start", _refusing(item, refused, "mp"))
    patch.setattr(_posixsubprocess, "fork_exec", _refusing(item, refused, "fork_exec"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            patch.setattr(os, name, _refusing(item, refused, f"os.{name}"))
    return patch


def _guarded(item: pytest.Item) -> Generator[None, Any, Any]:
    refused: list[str] = []
    patch = _guard(item, refused)
    try:
        result = yield
    finally:
        patch.undo()
    if refused:
        pytest.fail(f"unit test started a process: {', '.join(refused)}", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, Any, Any]:
    return (yield from _guarded(item))
