"""`agentic up` and `agentic cancel` when something is missing or in the way."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentic.processes import descendants_of
from tests.integration.nats_stack import start_agentic_up

pytestmark = [pytest.mark.nats, pytest.mark.procs]


def clean_env() -> dict[str, str]:
    """No AGENTIC_* setting of whoever runs the tests, except where `agentic up` leaves its
    client credential (tests/conftest.py: never the real home)."""
    keep = {"AGENTIC_NATS_CREDENTIALS_DIR"}
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_") or k in keep}


def agentic(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = clean_env()
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


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()  # a zombie is not alive
    return not stat.split(") ", 1)[1].startswith("Z")


def nats_server_of(data_dir: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[0].endswith(b"nats-server") and str(data_dir).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_killing_up_with_sigkill_takes_its_server_coordinator_and_workers_along(
    tmp_path: Path,
) -> None:
    env = clean_env()
    env["AGENTIC_RUN_STORE_URL"] = str(tmp_path / "store")
    data_dir = tmp_path / "js"
    up, announced = start_agentic_up(data_dir, env, tmp_path, "--isolation", "thread")
    children = [int(p) for p in re.findall(r"pids? (\d+)", announced)]
    server = nats_server_of(data_dir)
    assert len(children) == 2 and len(server) == 1
    workers = [pid for pid in children if b"worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    [worker] = workers
    assert b"--isolation\0thread" in Path(f"/proc/{worker}/cmdline").read_bytes()
    deadline = time.monotonic() + 60
    while not descendants_of(worker):  # its warm fork server
        assert time.monotonic() < deadline, "the worker started no fork server"
        time.sleep(0.05)
    stack = children + server + descendants_of(up.pid)

    up.kill()
    up.wait()

    deadline = time.monotonic() + 30
    try:
        while any(alive(pid) for pid in stack):
            assert time.monotonic() < deadline, "a process of the stack outlived agentic up"
            time.sleep(0.1)
    finally:
        for pid in stack:  # a failed test leaves nothing running
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_up_with_a_cluster_of_three_runs_a_workflow_on_replicated_streams(
    tmp_path: Path,
) -> None:
    config = Path(__file__).resolve().parents[2] / "config"
    env = {**clean_env(), "AGENTIC_CONFIG_DIR": str(config)}
    env["AGENTIC_RUN_STORE_URL"] = str(tmp_path / "store")
    data_dir = tmp_path / "js"
    up, announced = start_agentic_up(data_dir, env, tmp_path, "--cluster", "3")
    servers = nodes_under(data_dir)
    try:
        url = re.search(r"NATS: (\S+)", announced)
        assert url is not None
        assert len(url.group(1).split(",")) == 3
        assert len(servers) == 3
        done = subprocess.run(
            [sys.executable, "-m", "agentic", "run", "demo", "--backend", "nats"],
            env={**env, "AGENTIC_NATS_URL": url.group(1)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "succeeded" in done.stdout
        replicas = subprocess.run(
            [sys.executable, "-c", REPLICAS_OF_EVENTS, url.group(1)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert replicas.stdout.split() == ["3"], replicas.stderr
    finally:
        up.kill()  # SIGKILL: the nodes go with it (parent-death signal)
        up.wait()
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in servers):
        assert time.monotonic() < deadline, "a nats-server node outlived agentic up"
        time.sleep(0.1)


REPLICAS_OF_EVENTS = """
import asyncio, sys
from agentic.bus import connect
from agentic.settings import Settings

async def main():
    nc = await connect(Settings(nats_url=sys.argv[1]), name="replicas")
    try:
        print((await nc.jetstream().stream_info("AGENTIC_EVENTS")).config.num_replicas)
    finally:
        await nc.close()

asyncio.run(main())
"""


def nodes_under(data_dir: Path) -> list[int]:
    """The nats-server processes whose JetStream directory is in ``data_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if args[0].endswith("nats-server") and any(a.startswith(f"{data_dir}/") for a in args):
                pids.append(int(proc.name))
    return pids
