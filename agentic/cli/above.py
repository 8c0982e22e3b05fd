"""What a step prints or logs while the live table is drawn, printed above the table.

Rich's own redirection of a live display (``Live(redirect_stdout=True)``) covers plain
``print`` calls, but another rich ``Console`` (CrewAI's, which draws its verbose panels)
looks through rich's proxy and writes to the terminal directly, between the table's lines.
:func:`printed_above` replaces ``sys.stdout`` and ``sys.stderr`` with :class:`LinesAbove`,
which no console looks through: every complete line written to them, by ``print``, by the
log handler (:class:`agentic.logs.StderrHandler` writes to ``sys.stderr`` of the moment), by
a library's console or by :mod:`agentic.cli.relay`, is printed through the live display's
console, above the table.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator

from rich.ansi import AnsiDecoder
from rich.console import Console


class LinesAbove(io.TextIOBase):
    """A text stream whose lines are printed through ``console`` (above its live display).

    Not a terminal: a library that checks draws plain text at 80 columns. A line is printed
    once it is complete; what is left is printed by :meth:`close`.
    """

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console
        self._pending = ""
        self._lock = threading.Lock()
        self._decoder = AnsiDecoder()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        with self._lock:
            *lines, self._pending = (self._pending + text).split("\n")
        if lines:
            self._print(lines)
        return len(text)

    def close(self) -> None:
        with self._lock:
            rest, self._pending = self._pending, ""
        if rest:
            self._print([rest])
        super().close()

    def _print(self, lines: list[str]) -> None:
        for line in lines:
            self._console.print(self._decoder.decode_line(line), soft_wrap=True)


@contextlib.contextmanager
def printed_above(console: Console) -> Iterator[None]:
    """Inside the block, what is written to ``sys.stdout`` and ``sys.stderr`` is printed
    through ``console`` (which keeps writing to the stream it wrote to before)."""
    console.file = console.file  # pinned: sys.stdout is about to be replaced
    saved = sys.stdout, sys.stderr
    out, err = LinesAbove(console), LinesAbove(console)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
        out.close()
        err.close()
