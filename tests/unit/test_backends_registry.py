"""The backend registry and the small step-health contract shared by the launchers."""

from __future__ import annotations

import sys

import pytest

from agentic.backends import BACKENDS, StepHealth, get_backend
from agentic.errors import ConfigError


def test_the_registry_knows_the_four_backends_of_the_settings() -> None:
    assert BACKENDS == ("inprocess", "subprocess", "kubernetes", "nats")


def test_an_unknown_backend_name_is_a_config_error_listing_the_valid_names() -> None:
    with pytest.raises(ConfigError) as info:
        get_backend("docker")
    assert str(info.value) == (
        "unknown backend 'docker'; valid backends: inprocess, subprocess, kubernetes, nats"
    )


def test_a_backend_whose_optional_package_is_missing_says_what_to_pip_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # None in sys.modules makes the package unimportable, as if it were not installed.
    monkeypatch.setitem(sys.modules, "kubernetes", None)
    with pytest.raises(
        ConfigError, match=r"needs the Python package 'kubernetes'.*pip install agentic\[k8s\]"
    ):
        get_backend("kubernetes")


def test_an_exited_step_keeps_only_the_tail_of_its_stderr() -> None:
    health = StepHealth.exited(3, "x" * 5000 + "Traceback: boom")
    assert health.state == "exited" and health.exit_code == 3
    assert len(health.stderr_tail) == 2000 and health.stderr_tail.endswith("Traceback: boom")


def test_a_crashed_step_is_a_retryable_error_with_its_exit_code_and_stderr() -> None:
    error = StepHealth.exited(137, "Killed\n").crash_error()
    assert error.type == "StepCrashed" and error.retryable
    assert error.message == "step process exited with code 137; stderr ends with:\nKilled"
    assert StepHealth.exited(1).crash_error().message == "step process exited with code 1"
