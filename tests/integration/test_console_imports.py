"""The console process never imports CrewAI: it serves pages and checks forms, and the runs
it starts import CrewAI in their own processes (`agentic run`, `agentic replay`). And it
serves nothing beyond loopback without a token."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.procs]

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import re, sys
from pathlib import Path
from starlette.testclient import TestClient
from agentic.console.app import create_app
from agentic.console.launch import Launch, Launcher
from agentic.settings import Settings

class Done:
    def poll(self):
        return 0

class NoLaunch(Launcher):
    def start(self, run_id, args):
        launch = Launch(run_id, args, Done(), Path("/nonexistent"))
        self._launches[run_id] = launch
        return launch

settings = Settings(run_store_url=sys.argv[1], config_dir=sys.argv[2])
app = create_app(settings, launcher=NoLaunch({}))
with TestClient(app, base_url="http://127.0.0.1") as client:
    assert client.get("/").status_code == 200
    page = client.get("/start?workflow=parallel_demo")
    key = re.search(r'name="form_key" value="([^"]+)"', page.text).group(1)
    refused = client.post(
        "/start", data={"form_key": key, "workflow": "parallel_demo", "input.nope": "x"}
    )
    assert refused.status_code == 400, refused.text
    started = client.post(
        "/start",
        data={"form_key": key, "workflow": "parallel_demo", "input.topic": "x",
              "backend": "inprocess"},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
print("crewai" in sys.modules, "agentic.runtime" in sys.modules, "agentic.planning" in sys.modules)
"""


def test_serving_pages_and_checking_forms_imports_no_crewai(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(SCRIPT),
            str(tmp_path / "store"),
            str(REPO / "config"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]


def test_the_console_on_a_public_address_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    done = subprocess.run(
        [sys.executable, "-m", "agentic", "console", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 2
    assert "AGENTIC_CONSOLE_TOKEN" in done.stderr
