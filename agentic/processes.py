"""Processes of this machine: children that die with their parent, and whether a process
recorded earlier (a run's driver) still lives.

Linux only where it matters (``prctl``, ``/proc``); elsewhere a child does not die with its
parent and a recorded process is never declared gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when this process dies.

    Without it, a parent killed with SIGKILL leaves its children running. The request
    survives ``exec`` and is tied to the thread that forks: that thread must live as long
    as the child. ``None`` where ``prctl`` does not exist (not Linux).
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before the request took effect
            os._exit(1)

    return in_child


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (the parent's thread
    that forked it, precisely); exit at once if the parent is gone already. Does nothing
    where ``prctl`` does not exist."""
    parent = os.getppid()
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    prctl(_PR_SET_PDEATHSIG, sig)
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def signal_group(pid: int, sig: int) -> None:
    """``sig`` to the process group that ``pid`` leads (a step process leads its own
    session, so its group is everything it started); nothing if it is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def signal_step(pid: int, sig: int) -> None:
    """``sig`` to ``pid``'s group and to ``pid`` itself: a process forked an instant ago
    may not lead its own group yet."""
    signal_group(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (``/proc/<pid>/status``), None when unknown."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return None


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``); None
    when there is no such process (or no ``/proc``). With the pid, it names one process:
    a pid reused later has another start."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has ended
        return None
    return int(fields[19])  # field 22 of stat(5); fields[0] is field 3


def parents() -> dict[int, int]:
    """``pid -> parent pid`` of every live process of this machine (zombies left out),
    from ``/proc``; empty without it."""
    table: dict[int, int] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return table
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if fields[0] != "Z":
            table[int(entry.name)] = int(fields[1])
    return table


def children_of(pid: int, table: dict[int, int] | None = None) -> list[int]:
    """The live children of ``pid`` (``table``: a :func:`parents` snapshot to reuse)."""
    table = parents() if table is None else table
    return [child for child, parent in table.items() if parent == pid]


def descendants_of(pid: int) -> list[int]:
    """Every live process below ``pid``: children, their children, and so on."""
    table = parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children_of(parent, table)]
        found += frontier
    return found


def this_process() -> tuple[str, int, int | None]:
    """``(host, pid, start ticks)`` of this process."""
    pid = os.getpid()
    return socket.gethostname(), pid, start_ticks(pid)


def is_running_here(host: str, pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` of ``host`` surely still runs: this host, and a live
    process of that pid that started when it did."""
    if host != socket.gethostname():
        return False
    now = start_ticks(pid)
    return now is not None and (started is None or now == started)


def is_gone(host: str, pid: int, started: int | None) -> bool:
    """Whether the process ``pid`` of ``host`` has surely ended.

    False when that cannot be known here: another host, or no start time to compare with
    and a live process of that pid.
    """
    if host != socket.gethostname() or not Path("/proc").is_dir():
        return False
    now = start_ticks(pid)
    if now is None:
        return True
    return started is not None and now != started
