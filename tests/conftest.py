"""Shared test configuration. Fixtures live in tests/fixtures/<area>.py, one module per area;
builders of test data in tests/factories.py. Markers (pyproject.toml) say what a test needs:
``procs`` (starts processes), ``nats``, ``k8s``, ``browser``, and ``slow``."""

import os
import tempfile

import pytest

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")
# `agentic up` leaves its client credential there; never in the real home of whoever tests.
os.environ.setdefault(
    "AGENTIC_NATS_CREDENTIALS_DIR", tempfile.mkdtemp(prefix="agentic-test-credentials-")
)

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.nats",
    "tests.fixtures.k8s",
    "tests.fixtures.mcp",
    "tests.fixtures.s3",
]

# Modules another change owns, marked here until their own ``pytestmark`` says the same
# (then delete their entry): without it, ``-m "not procs"`` would still start processes.
PENDING_MARKS: dict[str, tuple[str, ...]] = {
    "tests/security/test_attacks.py": ("nats", "procs"),
    "tests/security/test_bus_permissions.py": ("nats", "procs"),
    "tests/security/test_local_stack.py": ("nats", "procs"),
    "tests/unit/test_coordinator.py::"
    "test_importing_the_coordinator_loads_no_framework_broker_cluster_or_store_code": ("procs",),
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module, _, _ = item.nodeid.partition("::")
        for name in PENDING_MARKS.get(module, ()) + PENDING_MARKS.get(item.nodeid, ()):
            item.add_marker(name)
