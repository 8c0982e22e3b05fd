"""The run store: every run's record, specs, attempts, committed results and artifacts.

One class over any fsspec filesystem; the scheme-specific parts (atomic replace and
create-if-absent) come from a :class:`~agentic.store.base.Writer`. The layout is DESIGN §6 and
every path comes from :mod:`agentic.names`, which validates ids before they become paths.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Iterator, Mapping
from contextlib import suppress
from datetime import datetime
from functools import cached_property
from typing import Any

from agentic import graph, names, redact
from agentic.contracts import Artifact, RunHeadline, RunRecord, StepResult, StepSpec, encode
from agentic.errors import DecodeError, StoreError, UnknownRunError
from agentic.store.documents import DocumentStore, safe_relpath
from agentic.store.index import RunIndex

log = logging.getLogger(__name__)


class RunStore(DocumentStore):
    """Durable state of runs at one fsspec location (built by :func:`agentic.store.open_store`;
    arguments as :class:`~agentic.store.documents.DocumentStore`)."""

    # --- runs --------------------------------------------------------------------------

    @cached_property
    def index(self) -> RunIndex:
        """The runs index (:mod:`agentic.store.index`), kept up to date by the writes below."""
        return RunIndex(self)

    def create_run(self, record: RunRecord) -> bool:
        """Write ``run.json`` unless the run exists.

        Returns:
            False when ``record.run_id`` already exists (the stored record is left as it is),
            which makes submitting the same run id twice start one run.
        """
        data = encode(record)
        self._check_size(names.run_json(record.run_id), data)
        self.index.opening(record)
        created = self._write_doc(names.run_json(record.run_id), data, exclusive=True)
        self.index.created(record, created=created)
        return created

    def write_run(self, record: RunRecord) -> None:
        """Replace ``run.json`` (status, steps, output) atomically.

        An output over :data:`RUN_JSON_OUTPUT_BYTES`, or too large to fit the document limit
        along with the rest of the record, is cut (:func:`fitted`): ``run.json`` keeps its
        start, its size in ``output_bytes`` and where the whole of it is (the committed
        result of the run's output step), and the run keeps its status. So ``run.json``
        stays small whatever the outputs.

        Raises:
            DocumentTooLargeError: the record does not fit even without its output.
        """
        data = encode(record)
        output_bytes = len(record.output.encode()) if record.output else 0
        if output_bytes > RUN_JSON_OUTPUT_BYTES or len(data) > self.max_doc_bytes:
            record = fitted(record, max(len(data) - self.max_doc_bytes, 0))
            data = encode(record)
        self._write_doc(names.run_json(record.run_id), data)
        self.index.recorded(record)

    def headlines(self, *, since: datetime | None = None) -> Iterator[RunHeadline]:
        """Runs created since ``since`` (all by default), newest first, from the index: what
        ``agentic runs`` pages through without reading the history."""
        return self.index.headlines(since=since)

    def open_runs(self, backend: str | None = None) -> list[RunRecord]:
        """The runs that have not ended (of ``backend`` when given), oldest first, from their
        ``run.json``: what a restarted coordinator continues."""
        found = []
        for marker in self.index.open_runs(backend):
            record = self.find_run(marker.run_id)
            self.index.settle(marker.run_id, record)
            if record is not None and not record.is_terminal:
                found.append(record)
        return found

    def read_run(self, run_id: str) -> RunRecord:
        """The run's record; :class:`UnknownRunError` when the store does not hold it."""
        record = self.find_run(run_id)
        if record is None:
            raise UnknownRunError(f"no run {run_id!r} in {self.url}", run_id=run_id)
        return record

    def find_run(self, run_id: str) -> RunRecord | None:
        """The run's record, or None when the store does not hold it (one read).

        Raises:
            DecodeError: its ``run.json`` is damaged.
        """
        return self._read_doc(names.run_json(run_id), RunRecord)

    def readable_run(self, run_id: str) -> RunRecord | None:
        """:meth:`find_run`, with a damaged ``run.json`` logged and read as None: what a
        listing does, so that one damaged run does not hide all the others."""
        try:
            return self.find_run(run_id)
        except DecodeError as exc:
            log.warning("skipping run %s: %s", run_id, exc)
            return None

    def run_exists(self, run_id: str) -> bool:
        """True when the run's ``run.json`` exists."""
        path = self._abs(names.run_json(run_id))
        with self._io("check", path):
            return bool(self.fs.exists(path))

    def request_cancel(self, run_id: str, request: Mapping[str, Any]) -> bool:
        """Ask the process driving ``run_id`` to cancel it: write ``cancel.json`` once.

        The local backends' driver looks for it while the run goes on (the ``nats``
        backend's coordinator is asked over NATS instead).

        Returns:
            False when a cancel was already requested (the first request is kept).
        """
        return self._write_doc(
            names.cancel_json(run_id), json.dumps(dict(request)).encode(), exclusive=True
        )

    def cancel_request(self, run_id: str) -> dict[str, Any] | None:
        """The cancel request of ``run_id`` (:meth:`request_cancel`), or None."""
        doc = self.read_json(names.cancel_json(run_id))
        return doc if isinstance(doc, dict) else None

    def list_runs(self) -> list[RunRecord]:
        """Every run, newest first by ``created_at``.

        A run whose ``run.json`` cannot be read is logged and left out, so that one damaged
        run does not hide all the others.
        """
        run_ids = self._list(names.RUNS_DIR, dirs=True)
        read = self.read_many(self.readable_run, run_ids)
        records = [record for record in read if record is not None]
        return sorted(records, key=lambda r: (r.created_at, r.run_id), reverse=True)

    def delete_run(self, run_id: str) -> bool:
        """Remove everything the store holds of ``run_id`` (``agentic gc``); False when it
        held nothing. The caller decides which runs may go (never an unfinished one)."""
        try:
            created_at: datetime | None = self.read_run(run_id).created_at
        except (UnknownRunError, DecodeError):
            created_at = None
        path = self._abs(names.run_dir(run_id))
        with self._io("delete", path):
            try:
                self.fs.rm(path, recursive=True)
            except FileNotFoundError:
                return False
            finally:
                self.index.removed(run_id, created_at)
        return True

    def list_run_ids(self) -> list[str]:
        """The ids of every run in the store (a listing: no ``run.json`` is read), sorted."""
        return self._list(names.RUNS_DIR, dirs=True)

    def list_json(self, folder: str) -> list[str]:
        """Names (without ``.json``) of the JSON documents in a store-relative folder."""
        names_ = self._list(safe_relpath(folder), dirs=False)
        return [n[: -len(".json")] for n in names_ if n.endswith(".json")]

    def delete_json(self, path: str) -> bool:
        """Remove a JSON document; False when there was none."""
        return self.delete_doc(safe_relpath(path))

    # --- steps -------------------------------------------------------------------------

    def write_spec(self, spec: StepSpec) -> str:
        """Write the spec of the step's current attempt; returns its URL for ``load_spec``."""
        self._write_doc(names.spec_json(spec.run_id, spec.step_id), encode(spec))
        return self.spec_url(spec.run_id, spec.step_id)

    def read_spec(self, run_id: str, step_id: str) -> StepSpec:
        """The step's spec; :class:`UnknownRunError` when it was never written."""
        spec = self._read_doc(names.spec_json(run_id, step_id), StepSpec)
        if spec is None:
            raise UnknownRunError(
                f"no spec for step {step_id!r} of run {run_id!r} in {self.url}",
                run_id=run_id,
                step_id=step_id,
            )
        return spec

    def spec_url(self, run_id: str, step_id: str) -> str:
        """Full URL of the step's ``spec.json`` (what ``agentic execute-step`` takes)."""
        return self._url(self._abs(names.spec_json(run_id, step_id)))

    def write_attempt(self, result: StepResult) -> None:
        """Record one attempt's result (``attempts/<n>.json``); a rerun replaces it."""
        path = names.attempt_json(result.run_id, result.step_id, result.attempt)
        self._write_doc(path, encode(result))

    def read_attempts(self, run_id: str, step_id: str) -> list[StepResult]:
        """Every recorded attempt of a step, by attempt number."""
        numbered = []
        for name in self._list(names.attempts_dir(run_id, step_id), dirs=False):
            stem, ext = posixpath.splitext(name)
            if ext == ".json" and stem.isdigit():
                numbered.append(int(stem))
        results = []
        for attempt in sorted(numbered):
            result = self._read_doc(names.attempt_json(run_id, step_id, attempt), StepResult)
            if result is not None:
                results.append(result)
        return results

    def commit_result(self, result: StepResult) -> tuple[StepResult, bool]:
        """Commit ``result`` as the step's result unless one is committed already.

        Exactly once, also under concurrent writers: the first commit wins and later ones
        never overwrite it.

        Returns:
            ``(committed, by_this_call)``: the result now committed, and whether it is ours.
        """
        path = names.result_json(result.run_id, result.step_id)
        if self._write_doc(path, encode(result), exclusive=True):
            return result, True
        return self._existing_commit(path), False

    def commit_attempt(self, result: StepResult) -> tuple[StepResult, bool]:
        """:meth:`write_attempt` then :meth:`commit_result` of the same ``result``.

        One encode, and on a local store one file write: the committed result is a hard link
        of the attempt file just written. Exactly once as :meth:`commit_result`. For a
        writer that alone writes this attempt (the ``inprocess`` backend): a concurrent
        rewrite of the same attempt file could be what gets committed.

        Returns:
            ``(committed, by_this_call)``: the result now committed, and whether it is ours.
        """
        data = redact.current().bytes(encode(result))
        attempt = names.attempt_json(result.run_id, result.step_id, result.attempt)
        self._write_doc(attempt, data)
        path = names.result_json(result.run_id, result.step_id)
        with self._io("write", self._abs(path)):
            created = self.writer.create_from(self._abs(attempt), self._abs(path), data)
        if created:
            return result, True
        return self._existing_commit(path), False

    def read_result(self, run_id: str, step_id: str) -> StepResult | None:
        """The step's committed result, or None when nothing is committed yet."""
        return self._read_doc(names.result_json(run_id, step_id), StepResult)

    def list_step_ids(self, run_id: str) -> list[str]:
        """Ids of the steps that have anything stored (spec, attempts or result), sorted."""
        return self._list(names.steps_dir(run_id), dirs=True)

    # --- artifacts ---------------------------------------------------------------------

    def write_artifact(
        self,
        run_id: str,
        step_id: str,
        relpath: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
    ) -> Artifact:
        """Store one file a step produced, under ``artifacts/<step_id>/<relpath>``."""
        path = names.artifact_path(run_id, step_id, relpath)
        raw = data.encode() if isinstance(data, str) else data
        self._write_bytes(path, raw)
        return Artifact(path=self._artifact_rel(run_id, step_id, path), mime=mime, size=len(raw))

    def read_artifact(self, run_id: str, step_id: str, relpath: str) -> bytes:
        """The bytes of one artifact; :class:`UnknownRunError` when it does not exist."""
        rel = names.artifact_path(run_id, step_id, relpath)
        data = self._read_bytes(rel, limit=None)
        if data is None:
            raise UnknownRunError(
                f"step {step_id!r} of run {run_id!r} has no artifact {relpath!r}",
                run_id=run_id,
                step_id=step_id,
            )
        return data

    def list_artifacts(self, run_id: str, step_id: str) -> list[str]:
        """Paths of a step's artifacts, relative to its artifacts folder, sorted."""
        base = self._abs(names.artifacts_dir(run_id, step_id))
        with self._io("list", base):
            try:
                found = self.fs.find(base)
            except FileNotFoundError:
                return []
        rels = [posixpath.relpath(p, base) for p in found]
        return sorted(r for r in rels if not any(part.startswith(".") for part in r.split("/")))

    def copy_artifacts(self, src_run_id: str, dst_run_id: str, step_id: str) -> list[str]:
        """Copy a step's artifacts from one run to another (a replay reusing a result).

        Returns:
            The relative paths copied.
        """
        names.artifacts_dir(dst_run_id, step_id)  # refuse an unsafe target before reading
        copied = self.list_artifacts(src_run_id, step_id)
        for rel in copied:
            data = self.read_artifact(src_run_id, step_id, rel)
            self._write_bytes(names.artifact_path(dst_run_id, step_id, rel), data)
        return copied

    # --- coordinators' public keys --------------------------------------------------------

    def publish_signer(self, public_key: str, info: Mapping[str, Any]) -> None:
        """Record a coordinator's step-signing *public* key (``keys/<key>.json``).

        Workers that have no configured keys trust the keys recorded here
        (:mod:`agentic.bus.signing`); a seed never goes into the store.
        """
        self._write_doc(names.signer_json(public_key), json.dumps(dict(info)).encode())

    def signers(self) -> list[str]:
        """The public keys coordinators recorded with :meth:`publish_signer`."""
        found = self._list(names.KEYS_DIR, dirs=False)
        return [name.removesuffix(".json") for name in found if name.endswith(".json")]

    def signer_info(self, public_key: str) -> dict[str, Any] | None:
        """What :meth:`publish_signer` recorded about ``public_key``, or None."""
        doc = self.read_json(names.signer_json(public_key))
        return doc if isinstance(doc, dict) else None

    def forget_signer(self, public_key: str) -> None:
        """Remove a recorded key (an old coordinator's): its signatures are refused from then."""
        path = self._abs(names.signer_json(public_key))
        with self._io("delete", path), suppress(FileNotFoundError):
            self.fs.rm_file(path)

    # --- internals ---------------------------------------------------------------------

    def _artifact_rel(self, run_id: str, step_id: str, path: str) -> str:
        return posixpath.relpath(path, names.artifacts_dir(run_id, step_id))

    def _existing_commit(self, rel: str) -> StepResult:
        """The result another writer committed at ``rel`` first."""
        existing = self._read_doc(rel, StepResult)
        if existing is None:  # only if someone deleted it between our two calls
            raise StoreError(f"{self._url(self._abs(rel))} vanished after a commit conflict")
        return existing


RUN_JSON_OUTPUT_BYTES = 1024 * 1024
"""The longest output ``run.json`` holds whole (UTF-8 bytes); a longer one is cut."""
OUTPUT_PREVIEW_BYTES = 64 * 1024
"""How much of an output too long for ``run.json`` it keeps (see :func:`fitted`)."""


def fitted(record: RunRecord, excess: int) -> RunRecord:
    """``record`` with its output cut by at least ``excess`` bytes (to at most
    :data:`OUTPUT_PREVIEW_BYTES`), followed by a note saying where the whole output is."""
    assert record.output is not None
    if record.output_bytes is not None:
        return record  # cut already (a record read back and written again)
    whole = record.output.encode()
    keep = max(0, min(OUTPUT_PREVIEW_BYTES, len(whole) - excess - 1024))
    step = graph.final_step(record.workflow) if record.workflow is not None else None
    where = (
        f"`agentic show {record.run_id} --output {step}`"
        if step
        else f"the results of run {record.run_id}"
    )
    note = f"\n\n[output cut: {keep:,} of {len(whole):,} bytes shown; the whole output: {where}]"
    preview = whole[:keep].decode(errors="ignore") + note
    return record.model_copy(update={"output": preview, "output_bytes": len(whole)})
