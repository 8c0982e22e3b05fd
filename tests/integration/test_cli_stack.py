"""`agentic up` and `agentic cancel` when something is missing or in the way."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def agentic(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    return subprocess.run(
        [sys.executable, "-m", "agentic", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_on_a_port_in_use_says_so_in_one_line_and_exits_1(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = agentic("up", "--port", str(port), "--data-dir", str(tmp_path / "js"), cwd=tmp_path)
    assert done.returncode == 1
    assert f"port {port} is in use" in done.stderr and "--port 0" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cancel_without_a_nats_url_exits_2_and_says_where_the_url_comes_from(
    tmp_path: Path,
) -> None:
    done = agentic("cancel", "some-run", cwd=tmp_path)
    assert done.returncode == 2
    assert "AGENTIC_NATS_URL" in done.stderr and "agentic up" in done.stderr


def test_cancel_of_an_unsafe_run_id_exits_2(tmp_path: Path) -> None:
    env_url = {"AGENTIC_NATS_URL": "nats://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "agentic", "cancel", "../etc"],
        env={**os.environ, **env_url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unsafe run id" in done.stderr
