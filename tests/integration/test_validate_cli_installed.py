"""`agentic validate` as users run it: the installed console script, in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import GATING_VARIABLES, REPO

pytestmark = pytest.mark.procs


def test_the_installed_command_validates_the_example_catalog():
    agentic = Path(sys.executable).with_name("agentic")
    env = {k: v for k, v in os.environ.items() if k not in GATING_VARIABLES}

    done = subprocess.run(
        [str(agentic), "validate", "config/"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("workflows: OK\n")
