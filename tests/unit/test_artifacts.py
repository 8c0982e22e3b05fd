"""Fenced code blocks labelled ``file=<path>`` in an output become the step's artifacts."""

from __future__ import annotations

import logging

import pytest

from agentic.contracts import Artifact
from agentic.runtime.artifacts import extract_artifacts, is_safe_relpath, save_artifacts

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
    "path", ["../etc/passwd", "/abs.txt", "a/../b.txt", ".env", "a//b", "c:\\x"]
)
def test_unsafe_paths_are_skipped_with_a_warning(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert not is_safe_relpath(path)
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
