"""Fenced code blocks labelled ``file=<path>`` in an output become the step's artifacts."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentic.contracts import Artifact
from agentic.errors import StoreError
from agentic.names import is_safe_artifact_path
from agentic.runtime.artifacts import extract_artifacts, save_artifacts
from agentic.store import RunStore, open_store

OUTPUT = """Here is the report.

```python file=report.py
print("hello")
```

Some notes, and a block that is only an example:

```bash
rm -rf /
```

```markdown file="docs/summary.md"
# Summary

- one
```
"""


def test_labelled_blocks_are_extracted_with_path_content_and_mime() -> None:
    found = {a.relpath: a for a in extract_artifacts(OUTPUT)}
    assert sorted(found) == ["docs/summary.md", "report.py"]
    assert found["report.py"].data == b'print("hello")\n'
    assert found["docs/summary.md"].data == b"# Summary\n\n- one\n"
    assert found["report.py"].mime == "text/x-python"
    assert found["docs/summary.md"].mime == "text/markdown"


def test_an_output_without_labelled_blocks_has_no_artifacts() -> None:
    assert extract_artifacts("Just text.\n```json\n{}\n```\n") == []


def test_longer_fences_may_contain_shorter_ones_and_tildes_work_too() -> None:
    output = (
        "````markdown file=README.md\n```python\nx = 1\n```\n````\n~~~ file=data.csv\na,b\n~~~\n"
    )
    found = {a.relpath: a.data for a in extract_artifacts(output)}
    assert found == {"README.md": b"```python\nx = 1\n```\n", "data.csv": b"a,b\n"}


def test_a_later_block_with_the_same_path_wins() -> None:
    output = "```text file=a.txt\nfirst\n```\n```text file=a.txt\nsecond\n```\n"
    assert [a.data for a in extract_artifacts(output)] == [b"second\n"]


@pytest.mark.parametrize(
    "path", ["../etc/passwd", "/abs.txt", "a/../b.txt", ".env", "a/.git/x", "a//b", "c:\\x"]
)
def test_unsafe_paths_are_skipped_with_a_warning(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert not is_safe_artifact_path(path)
    with caplog.at_level(logging.WARNING):
        assert extract_artifacts(f"```text file={path}\nx\n```\n") == []
    assert "not a safe relative path" in caplog.text


def test_saving_writes_each_file_through_the_store() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, str, bytes, str]] = []

        def write_artifact(
            self, run_id: str, step_id: str, relpath: str, data: bytes, mime: str
        ) -> Artifact:
            self.calls.append((run_id, step_id, relpath, data, mime))
            return Artifact(path=relpath, mime=mime, size=len(data))

    store = Recorder()
    saved = save_artifacts(store, "run-1", "write", OUTPUT)
    assert [a.path for a in saved] == ["report.py", "docs/summary.md"]
    assert store.calls[0] == ("run-1", "write", "report.py", b'print("hello")\n', "text/x-python")


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunStore]:
    """A real run store: a local folder, or fsspec's (process-global) memory filesystem."""
    if request.param == "file":
        yield open_store((tmp_path / "store").as_uri())
        return
    opened = open_store(f"memory://artifacts-{uuid.uuid4().hex}")
    yield opened
    if opened.fs.exists(opened.root):
        opened.fs.rm(opened.root, recursive=True)


def blocks(*paths: str) -> str:
    """An output with one labelled block per path, each holding its own path."""
    return "".join(f"```text file={path}\n{path}\n```\n" for path in paths)


@pytest.mark.parametrize("path", ["_notes.md", "a+b.txt", "_drafts/v1+2_final.md", "c++.md"])
def test_every_path_extraction_accepts_is_saved_by_the_store(store: RunStore, path: str) -> None:
    assert [a.relpath for a in extract_artifacts(blocks(path))] == [path]

    saved = save_artifacts(store, "run-1", "write", blocks(path))

    assert [a.path for a in saved] == [path]
    assert store.read_artifact("run-1", "write", path) == f"{path}\n".encode()
    assert store.list_artifacts("run-1", "write") == [path]


@pytest.mark.parametrize(
    ("paths", "kept", "skipped", "earlier"),
    [
        (["a", "a/b"], "a", "a/b", "a"),
        (["a/b", "a"], "a/b", "a", "a/b"),
        (["x/a", "x/a/b/c.md"], "x/a", "x/a/b/c.md", "x/a"),
        (["x/a/b/c.md", "x/a/b"], "x/a/b/c.md", "x/a/b", "x/a/b/c.md"),
    ],
)
def test_a_path_that_needs_a_file_to_be_a_folder_is_skipped_naming_both(
    store: RunStore,
    caplog: pytest.LogCaptureFixture,
    paths: list[str],
    kept: str,
    skipped: str,
    earlier: str,
) -> None:
    with caplog.at_level(logging.WARNING):
        saved = save_artifacts(store, "run-1", "write", blocks(*paths, "other.md"))

    assert [a.path for a in saved] == [kept, "other.md"]
    assert store.read_artifact("run-1", "write", kept) == f"{kept}\n".encode()
    assert f"artifact path {skipped!r} conflicts with the earlier {earlier!r}" in caplog.text


def test_a_later_block_may_still_replace_a_file_or_add_one_beside_it() -> None:
    found = extract_artifacts(blocks("a/b", "a/c", "a/b"))

    assert [a.relpath for a in found] == ["a/b", "a/c"]


def test_a_file_the_store_cannot_write_is_left_out_and_the_others_are_saved(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store((tmp_path / "store").as_uri())
    # An earlier attempt left a folder where this attempt writes a file.
    store.write_artifact("run-1", "write", "report/old.md", b"old")

    with caplog.at_level(logging.WARNING):
        saved = save_artifacts(store, "run-1", "write", blocks("first.md", "report", "last.md"))

    assert [a.path for a in saved] == ["first.md", "last.md"]
    assert "artifact 'report' of run-1/write not saved" in caplog.text
    assert store.read_artifact("run-1", "write", "last.md") == b"last.md\n"


def test_a_store_error_of_any_kind_does_not_escape_save_artifacts() -> None:
    class Full:
        def write_artifact(
            self, run_id: str, step_id: str, relpath: str, data: bytes, mime: str
        ) -> Artifact:
            raise StoreError("cannot write memory://x: no space left on device")

    assert save_artifacts(Full(), "run-1", "write", OUTPUT) == []
