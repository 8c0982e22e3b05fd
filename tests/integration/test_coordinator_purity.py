"""The coordinator's state machine is pure: importing it loads no framework, broker, cluster
or store code (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.procs


def test_importing_the_coordinator_loads_no_framework_broker_cluster_or_store_code() -> None:
    forbidden = ["crewai", "nats", "kubernetes", "fsspec", "agentic.store", "agentic.runtime"]
    code = f"import sys, agentic.coordinator; print([m for m in {forbidden!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
