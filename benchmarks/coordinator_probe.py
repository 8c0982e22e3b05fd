"""``agentic coordinator`` exactly as the CLI runs it, plus a report on SIGUSR1.

The footprint benchmark needs two facts only the coordinator process itself knows: its
resident memory and whether CrewAI is among its modules. This probe runs the real command
(``agentic coordinator``) and, on SIGUSR1, writes them as JSON to the path it was given::

    python -m benchmarks.coordinator_probe /tmp/report.json   # then: kill -USR1 <pid>
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType


def memory_kb() -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (peak resident) of this process, in KiB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def report() -> dict[str, object]:
    """What the process looks like now."""
    memory = memory_kb()
    return {
        "pid": os.getpid(),
        "rss_mb": round(memory["VmRSS"] / 1024, 1),
        "peak_rss_mb": round(memory["VmHWM"] / 1024, 1),
        "crewai_imported": "crewai" in sys.modules,
        "runtime_imported": "agentic.runtime" in sys.modules,
        "modules": len(sys.modules),
    }


def main() -> None:
    path = sys.argv[1]

    def on_usr1(signum: int, frame: FrameType | None) -> None:
        tmp = f"{path}.tmp"
        Path(tmp).write_text(json.dumps(report()))
        os.replace(tmp, path)  # readers never see half a report

    signal.signal(signal.SIGUSR1, on_usr1)
    from agentic.cli import main as cli

    sys.argv = ["agentic", "coordinator"]
    cli()


if __name__ == "__main__":
    main()
