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
listed in the step's result. A path must be relative, use ``/``, and have no ``..``,
empty or hidden (``.``-leading) segment; blocks with other paths are skipped with a warning.
When two blocks name the same path, the later one wins. Blocks without ``file=`` are
ordinary text.
"""

from __future__ import annotations

import logging
import mimetypes
import re
from dataclasses import dataclass
from typing import Protocol

from agentic.contracts import Artifact

log = logging.getLogger(__name__)

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_FILE_WORD = re.compile(r"""(?:^|\s)file=(?:"([^"]+)"|'([^']+)'|(\S+))""")
_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
MAX_PATH_CHARS = 512
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


def is_safe_relpath(path: str) -> bool:
    """True for a relative ``/``-separated path without ``..``, empty or hidden segments."""
    if not path or len(path) > MAX_PATH_CHARS or path.startswith("/") or "\\" in path:
        return False
    return all(_SEGMENT.fullmatch(seg) and ".." not in seg for seg in path.split("/"))


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


def extract_artifacts(output: str) -> list[ExtractedArtifact]:
    """The files an output declares, in the order they first appear; later blocks win."""
    found: dict[str, ExtractedArtifact] = {}
    for info, content in _blocks(output):
        name = _file_name(info)
        if name is None:
            continue
        if not is_safe_relpath(name):
            log.warning("artifact path %r is not a safe relative path; block skipped", name)
            continue
        found[name] = ExtractedArtifact(name, content.encode("utf-8"), guess_mime(name))
    return list(found.values())


def save_artifacts(sink: ArtifactSink, run_id: str, step_id: str, output: str) -> list[Artifact]:
    """Write every file ``output`` declares to the run store; return what was written."""
    return [
        sink.write_artifact(run_id, step_id, item.relpath, item.data, item.mime)
        for item in extract_artifacts(output)
    ]
