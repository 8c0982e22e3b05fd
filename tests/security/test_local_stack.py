"""`agentic up` is its user's alone: fresh credentials, loopback only, a credential only the
user can read, found by the user's clients without a flag, and refused to everybody else."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from agentic import names
from agentic.bus import connect
from agentic.bus.credentials import credential_path
from agentic.errors import BusError
from agentic.settings import Settings
from tests.integration.nats_stack import start_agentic_up

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]


@dataclass
class Up:
    url: str
    env: dict[str, str]
    credentials: Path
    process: subprocess.Popen[str]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    root = tmp_path_factory.mktemp("up")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env |= {
        "AGENTIC_RUN_STORE_URL": str(root / "store"),
        "AGENTIC_NATS_CREDENTIALS_DIR": str(root / "credentials"),
        "AGENTIC_CONFIG_DIR": str(Path(__file__).resolve().parents[2] / "config"),
    }
    process, announced = start_agentic_up(root / "js", env, root)
    found = re.search(r"nats://127\.0\.0\.1:\d+", announced)
    assert found is not None, announced
    try:
        yield Up(found.group(0), env, root / "credentials", process)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_the_client_credential_is_readable_by_its_user_alone(up: Up) -> None:
    path = credential_path(Settings(nats_credentials_dir=str(up.credentials)), up.url)
    assert path is not None and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_nats_server_listens_on_loopback_only(up: Up) -> None:
    port = int(up.url.rsplit(":", 1)[1])
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, nothing else


async def test_a_client_without_the_credential_is_not_authorized(up: Up, tmp_path: Path) -> None:
    with pytest.raises(BusError, match=r"(?i)authorization violation"):
        await connect(
            Settings(nats_url=up.url, nats_credentials_dir=str(tmp_path)), name="intruder"
        )
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(up.url, max_reconnect_attempts=1, allow_reconnect=False)


def test_agentic_cancel_without_the_credential_says_not_authorized(up: Up, tmp_path: Path) -> None:
    env = {**up.env, "AGENTIC_NATS_URL": up.url, "AGENTIC_NATS_CREDENTIALS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "agentic", "cancel", "someone-elses-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "Authorization Violation" in done.stderr


def test_the_user_runs_a_workflow_on_it_without_a_flag(up: Up) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentic", "run", "demo", "--backend", "nats", "--run-id", "mine"],
        env={**up.env, "AGENTIC_NATS_URL": up.url},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert "run mine succeeded" in done.stdout


async def test_even_the_users_client_may_not_dispatch_steps(up: Up) -> None:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    seed = credential_path(Settings(nats_credentials_dir=str(up.credentials)), up.url)
    nc = await nats.connect(up.url, nkeys_seed=str(seed), error_cb=on_error)
    try:
        await nc.publish(names.steps_subject("default"), b"{}")
        await nc.flush()
        for _ in range(100):
            if errors:
                break
            await asyncio.sleep(0.02)
    finally:
        await nc.close()
    assert any("permissions violation for publish" in e.lower() for e in errors)


def test_stopping_up_removes_the_credential_it_left(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env |= {"AGENTIC_NATS_CREDENTIALS_DIR": str(tmp_path / "credentials")}
    process, _ = start_agentic_up(tmp_path / "js", env, tmp_path, "--workers", "0")
    assert list((tmp_path / "credentials").iterdir())

    process.send_signal(signal.SIGTERM)
    process.wait(60)

    assert process.returncode == 0
    assert not list((tmp_path / "credentials").iterdir())
