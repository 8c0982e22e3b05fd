"""CrewAI's own storage goes to a private, throwaway directory per process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.procs

SHOW = (
    "import json, os, sys; import agentic.runtime; agentic.runtime.setup(); "
    "print(json.dumps(os.environ.get('CREWAI_STORAGE_DIR')))"
)
IMPORT_ONLY = (
    "import json, os; before = dict(os.environ); import agentic.runtime; "
    "print(json.dumps(sorted(set(os.environ.items()) ^ set(before.items()))))"
)


def storage_dir_of_a_new_process(**env: str) -> str | None:
    clean = {k: v for k, v in os.environ.items() if k != "CREWAI_STORAGE_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def test_each_process_gets_its_own_crewai_storage_removed_when_it_exits() -> None:
    first, second = storage_dir_of_a_new_process(), storage_dir_of_a_new_process()
    assert first and second and first != second
    assert Path(first).name.startswith("agentic-crewai-")
    assert not Path(first).exists() and not Path(second).exists()


def test_a_child_does_not_share_the_directory_its_parent_made(tmp_path: Path) -> None:
    parent_dir = tmp_path / "agentic-crewai-1-parent"  # pid 1 is never this child
    parent_dir.mkdir()
    child = storage_dir_of_a_new_process(CREWAI_STORAGE_DIR=str(parent_dir))
    assert child is not None and child != str(parent_dir)


def test_a_storage_directory_the_user_chose_is_kept(tmp_path: Path) -> None:
    chosen = str(tmp_path / "crewai")
    assert storage_dir_of_a_new_process(CREWAI_STORAGE_DIR=chosen) == chosen


def test_directories_left_by_killed_processes_are_cleaned_up() -> None:
    root = Path("/dev/shm") if os.access("/dev/shm", os.W_OK) else None
    if root is None:
        import tempfile

        root = Path(tempfile.gettempdir())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = root / f"agentic-crewai-{dead.stdout.strip()}-orphan"
    orphan.mkdir()
    storage_dir_of_a_new_process()
    assert not orphan.exists()


def test_importing_the_runtime_changes_nothing_until_it_is_set_up() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CREWAI_")}
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ONLY], env=clean, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []
