"""Shared test configuration. Fixtures live in tests/fixtures/<area>.py, one module per area."""

import os

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OTEL_SDK_DISABLED", "true")

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.nats",
    "tests.fixtures.k8s",
    "tests.fixtures.mcp",
    "tests.fixtures.s3",
]
