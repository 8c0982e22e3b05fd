"""Shared test configuration. Fixtures live in tests/fixtures/<area>.py, one module per area;
builders of test data in tests/factories.py. Markers (pyproject.toml) say what a test needs:
``procs`` (starts processes), ``nats``, ``k8s``, ``browser``, and ``slow``."""

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

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.nats",
    "tests.fixtures.k8s",
    "tests.fixtures.mcp",
    "tests.fixtures.s3",
]
