"""What the embedded stack's step processes print, relayed through this process's stderr.

The worker of ``agentic run --backend nats`` (without ``AGENTIC_NATS_URL``) runs each step
in a process forked from the warm runtime (:mod:`agentic.runtime.warm`), which inherits the
terminal: CrewAI's log lines and prints there would land in the middle of the live progress
table and break it. :func:`warm_runtime_relayed` starts the warm runtime with its standard
output and error on a pipe instead; a thread reads the pipe line by line and writes each
line to ``sys.stderr`` as it is at that moment: above the table while the live display
(which redirects ``sys.stderr``) is shown, to the terminal before and after it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

from agentic import redact


def warm_runtime_relayed() -> None:
    """Start the warm runtime with its output relayed (one that runs already keeps its
    output where it was, and the relay ends at once).

    The runtime dies with the calling thread (:func:`agentic.runtime.warm.start`): call it
    from the thread that runs the worker. Nothing else may write to this process's standard
    output or error meanwhile (the main thread waits for the embedded services to start).
    """
    from agentic.runtime import warm

    read_end, write_end = os.pipe()
    try:
        with _standard_fds_to(write_end):
            warm.start()
    finally:
        os.close(write_end)  # the fork server holds its own copies now
    threading.Thread(
        target=relay, args=(read_end,), name="agentic-step-output", daemon=True
    ).start()


@contextlib.contextmanager
def _standard_fds_to(fd: int) -> Iterator[None]:
    """File descriptors 1 and 2 of this process point at ``fd`` inside the block (what a
    process started meanwhile inherits)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for copy in saved:
            os.close(copy)


def relay(fd: int) -> None:
    """Write every line read from ``fd`` to ``sys.stderr`` (secrets masked) until EOF."""
    with open(fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _write(line)
        if pending:
            _write(pending)


def _write(line: bytes) -> None:
    text = redact.current().text(line.decode("utf-8", errors="replace"))
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed while the process exits
        pass
