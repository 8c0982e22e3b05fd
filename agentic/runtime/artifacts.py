"""Files an agent's output declares: fenced code blocks labelled ``file=<path>``.

An agent saves a file by writing a fenced code block whose info string has a
``file=<relative path>`` word (quotes optional)::

    ```python file=report.py
    print("hello")
    ```

    ```markdown file="docs/summary.md"
    # Summary
    ```

The block's content becomes ``<store>/runs/<run_id>/artifacts/<step_id>/<path>`` and is
listed in the step's result. Blocks without ``file=`` are ordinary text. Which paths are
accepted is decided once, by :func:`agentic.names.is_safe_artifact_path` (relative, ``/``,
segments of letters, digits and ``_.+-`` with no ``..``, empty or hidden (``.``-leading)
segment), the same rule the store applies, so a block that passes here is never refused by
the store. Other blocks are skipped with a warning, and so is a block whose path needs an
earlier block's file to be a folder, or the reverse (``a`` and ``a/b``): no filesystem can
hold both. When two blocks name the same path, the later one wins.

Saving never fails a step: a file the store cannot write is left out of the result with a
warning, because the step's output (which the model was paid for) matters more than one of
its files.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from dataclasses import dataclass
from typing import Protocol

from agentic.contracts import Artifact
from agentic.errors import StoreError
from agentic.names import is_safe_artifact_path

log = logging.getLogger(__name__)

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FILE_WORD = re.compile(r"""(?:^|\s)file=(?:"([^"]+)"|'([^']+)'|(\S+))""")
# Python's built-in table only: the system's mime.types differs between machines, and a
# result must not depend on the worker that produced it.
_MIME = mimetypes.MimeTypes()
for _ext, _type in {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
}.items():
    _MIME.add_type(_type, _ext)


@dataclass(frozen=True)
class ExtractedArtifact:
    """One file declared in an output: where it goes, its bytes and its MIME type."""

    relpath: str
    data: bytes
    mime: str


class ArtifactSink(Protocol):
    """What saving artifacts needs from a run store (``RunStore`` has it)."""

    def write_artifact(
        self, run_id: str, step_id: str, relpath: str, data: bytes, mime: str
    ) -> Artifact: ...


def guess_mime(relpath: str) -> str:
    """The MIME type of a file name; text for anything unknown (blocks hold text)."""
    mime, _ = _MIME.guess_type(relpath, strict=False)
    return mime or "text/plain"


def _file_name(info: str) -> str | None:
    match = _FILE_WORD.search(info)
    if match is None:
        return None
    return next(g for g in match.groups() if g is not None)


def _blocks(output: str) -> list[tuple[str, str]]:
    """Every fenced block as ``(info string, content)``; an unclosed block runs to the end."""
    blocks: list[tuple[str, str]] = []
    lines = output.splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None or ("`" in opening["info"] and opening["fence"][0] == "`"):
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        body: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            body.append(lines[i])
            i += 1
        i += 1
        blocks.append((info, "\n".join(body) + "\n" if body else ""))
    return blocks


class _Layout:
    """The paths accepted so far, as files and the folders they need."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.folders: dict[str, str] = {}  # folder -> the first file that needs it

    def conflict(self, path: str) -> str | None:
        """An accepted path that makes ``path`` impossible: one must be a file and a folder."""
        if path in self.folders:
            return self.folders[path]
        # Looked up by prefix, not compared with every accepted path: an output with many
        # blocks costs its own length, not its number of blocks squared.
        return next((f for f in _parents(path) if f in self.files), None)

    def add(self, path: str) -> None:
        self.files.add(path)
        for folder in _parents(path):
            self.folders.setdefault(folder, path)


def _parents(path: str) -> list[str]:
    """``a/b/c`` -> ``["a", "a/b"]``."""
    parts = path.split("/")
    return ["/".join(parts[:n]) for n in range(1, len(parts))]


def extract_artifacts(output: str) -> list[ExtractedArtifact]:
    """The files an output declares, in the order they first appear; later blocks win.

    A block with an unsafe path, or with a path that conflicts with an earlier block's (one
    of them would have to be a file and a folder at once), is skipped with a warning.
    """
    found: dict[str, ExtractedArtifact] = {}
    layout = _Layout()
    for info, content in _blocks(output):
        name = _file_name(info)
        if name is None:
            continue
        if not is_safe_artifact_path(name):
            log.warning("artifact path %r is not a safe relative path; block skipped", name)
            continue
        other = layout.conflict(name)
        if other is not None:
            log.warning(
                "artifact path %r conflicts with the earlier %r (a path cannot be both a file "
                "and a folder); block skipped",
                name,
                other,
            )
            continue
        layout.add(name)
        found[name] = ExtractedArtifact(name, content.encode("utf-8"), guess_mime(name))
    return list(found.values())


def save_artifacts(sink: ArtifactSink, run_id: str, step_id: str, output: str) -> list[Artifact]:
    """Write every file ``output`` declares to the run store; return what was written.

    Never raises for a store failure: a file that cannot be written (a full disk, a folder an
    earlier attempt left where this one writes a file) is logged and left out of the result.
    """
    saved: list[Artifact] = []
    for item in extract_artifacts(output):
        try:
            saved.append(sink.write_artifact(run_id, step_id, item.relpath, item.data, item.mime))
        except StoreError as exc:
            log.warning("artifact %r of %s/%s not saved: %s", item.relpath, run_id, step_id, exc)
    return saved
