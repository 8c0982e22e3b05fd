"""Shared test configuration. Fixtures live in tests/fixtures/<area>.py, one module per area;
builders of test data in tests/factories.py. Markers (pyproject.toml) say what a test needs:
``procs`` (starts processes), ``nats``, ``k8s``, ``browser``, ``slow``, and ``serial``
(added here, :data:`SERIAL`)."""

import os
import tempfile

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
# `agentic up` leaves its client credential there; never in the real home of whoever tests.
os.environ.setdefault(
    "AGENTIC_NATS_CREDENTIALS_DIR", tempfile.mkdtemp(prefix="agentic-test-credentials-")
)

# Tests build CrewAI objects directly (agentic.runtime's submodules): set the runtime up as
# the step process and the in-process backend do before CrewAI is imported.
from agentic import runtime

runtime.setup()

# Tests that measure timing or race a live run (leases against stalls, leader elections,
# requests in flight at once, Ctrl-C and detach, benchmark figures): `make test` runs them
# alone, after the rest of the suite ran on two processes (pytest-xdist). Module paths, or
# ``path::test`` for one test of a module.
SERIAL = (
    "tests/integration/test_bench_",  # every benchmark smoke test
    "tests/integration/test_coordinator_lease.py",
    "tests/integration/test_nats_cluster.py",
    "tests/integration/test_provider_budgets.py",
    "tests/integration/test_nats_backend.py",
    "tests/integration/test_provider_http.py",
    "tests/integration/test_cli_stack.py",
    "tests/integration/test_runtime.py::test_kickoffs_that_fail_or_are_interrupted",
)


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    """Mark the tests of :data:`SERIAL` ``serial``."""
    import pytest

    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.nats",
    "tests.fixtures.k8s",
    "tests.fixtures.mcp",
    "tests.fixtures.s3",
]
