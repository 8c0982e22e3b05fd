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
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from fsspec import AbstractFileSystem
from pydantic import BaseModel

from agentic import names, redact
from agentic.contracts import Artifact, RunRecord, StepResult, StepSpec, decode, encode
from agentic.errors import DecodeError, DocumentTooLargeError, StoreError, UnknownRunError
from agentic.ids import check_id, is_safe_id
from agentic.store.base import Writer

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class RunStore:
    """Durable state of runs at one fsspec location.

    Args:
        fs: the filesystem.
        root: the store's root path on ``fs`` (as fsspec strips it from the URL).
        writer: atomic writes for this kind of filesystem.
        max_doc_bytes: largest JSON document read or written (``settings.max_message_bytes``).
    """

    def __init__(
        self, fs: AbstractFileSystem, root: str, writer: Writer, *, max_doc_bytes: int
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.writer = writer
        self.max_doc_bytes = max_doc_bytes

    def __repr__(self) -> str:
        return f"RunStore({self.url!r})"

    @property
    def url(self) -> str:
        """The store's URL, with its scheme (``file://…``, ``memory://…``, ``s3://…``)."""
        return str(self.fs.unstrip_protocol(self.root or "/"))

    # --- runs --------------------------------------------------------------------------

    def create_run(self, record: RunRecord) -> bool:
        """Write ``run.json`` unless the run exists.

        Returns:
            False when ``record.run_id`` already exists (the stored record is left as it is),
            which makes submitting the same run id twice start one run.
        """
        return self._write_doc(names.run_json(record.run_id), encode(record), exclusive=True)

    def write_run(self, record: RunRecord) -> None:
        """Replace ``run.json`` (status, steps, output) atomically."""
        self._write_doc(names.run_json(record.run_id), encode(record))

    def read_run(self, run_id: str) -> RunRecord:
        """The run's record; :class:`UnknownRunError` when the store does not hold it."""
        record = self._read_doc(names.run_json(run_id), RunRecord)
        if record is None:
            raise UnknownRunError(f"no run {run_id!r} in {self.url}", run_id=run_id)
        return record

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
        workers = min(self.writer.read_concurrency, len(run_ids))
        if workers > 1:  # a remote store: round trips overlap
            with ThreadPoolExecutor(workers, thread_name_prefix="agentic-list-runs") as pool:
                read = list(pool.map(self._read_listed_run, run_ids))
        else:
            read = [self._read_listed_run(run_id) for run_id in run_ids]
        records = [record for record in read if record is not None]
        return sorted(records, key=lambda r: (r.created_at, r.run_id), reverse=True)

    def _read_listed_run(self, run_id: str) -> RunRecord | None:
        try:
            return self._read_doc(names.run_json(run_id), RunRecord)
        except DecodeError as exc:
            log.warning("skipping run %s: %s", run_id, exc)
            return None

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

    # --- small documents ---------------------------------------------------------------

    def read_json(self, path: str) -> Any:
        """A JSON document at a store-relative path (from :mod:`agentic.names`); None if absent."""
        rel = _safe_relpath(path)
        raw = self._read_bytes(rel, limit=self.max_doc_bytes)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            url = self._url(self._abs(rel))
            raise DecodeError(f"{url}: invalid JSON: {exc}", raw=raw, cause=exc) from exc

    def write_json(self, path: str, obj: Any) -> None:
        """Atomically write ``obj`` (JSON-serializable, or a pydantic model) at ``path``."""
        rel = _safe_relpath(path)
        data = encode(obj) if isinstance(obj, BaseModel) else json.dumps(obj).encode()
        self._write_doc(rel, data)

    # --- internals ---------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _url(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    def _artifact_rel(self, run_id: str, step_id: str, path: str) -> str:
        return posixpath.relpath(path, names.artifacts_dir(run_id, step_id))

    @contextmanager
    def _io(self, action: str, path: str) -> Iterator[None]:
        """Turn the filesystem's own errors into a :class:`StoreError` naming the URL."""
        try:
            yield
        except self.writer.io_errors as exc:
            raise StoreError(f"cannot {action} {self._url(path)}: {exc}", cause=exc) from exc

    def _read_bytes(self, rel: str, *, limit: int | None) -> bytes | None:
        path = self._abs(rel)
        with self._io("read", path):
            try:
                if limit is None:
                    return bytes(self.fs.cat_file(path))
                # Read one byte past the limit: enough to know the file is too large.
                data = self._read_prefix(path, limit + 1)
            except FileNotFoundError:
                return None
        if len(data) > limit:
            raise DecodeError(
                f"{self._url(path)}: larger than the limit of {limit} bytes "
                "(setting AGENTIC_MAX_MESSAGE_BYTES)",
                raw=data[:1024],
            )
        return data

    def _read_prefix(self, path: str, size: int) -> bytes:
        """At most ``size`` bytes from the start of a file, in one request."""
        try:
            return bytes(self.fs.cat_file(path, start=0, end=size))
        except FileNotFoundError:
            raise
        except OSError:
            # S3 refuses every byte range of an empty object (416 InvalidRange).
            if self.fs.size(path) == 0:
                return b""
            raise

    def _read_doc(self, rel: str, cls: type[M]) -> M | None:
        raw = self._read_bytes(rel, limit=self.max_doc_bytes)
        if raw is None:
            return None
        try:
            return decode(cls, raw)
        except DecodeError as exc:
            url = self._url(self._abs(rel))
            raise DecodeError(f"{url}: {exc.message}", raw=exc.raw, cause=exc.cause) from exc

    def _existing_commit(self, rel: str) -> StepResult:
        """The result another writer committed at ``rel`` first."""
        existing = self._read_doc(rel, StepResult)
        if existing is None:  # only if someone deleted it between our two calls
            raise StoreError(f"{self._url(self._abs(rel))} vanished after a commit conflict")
        return existing

    def _write_doc(self, rel: str, data: bytes, *, exclusive: bool = False) -> bool:
        if len(data) > self.max_doc_bytes:
            raise DocumentTooLargeError(
                f"{self._url(self._abs(rel))}: document of {len(data)} bytes exceeds the limit "
                f"of {self.max_doc_bytes} bytes (setting AGENTIC_MAX_MESSAGE_BYTES)"
            )
        return self._write_bytes(rel, data, exclusive=exclusive)

    def _write_bytes(self, rel: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Write ``data`` at ``rel``, secret values masked (:mod:`agentic.redact`): whatever
        a step, a model or a user put in it, no credential of this process lands here."""
        data = redact.current().bytes(data)
        path = self._abs(rel)
        with self._io("write", path):
            if exclusive:
                return self.writer.create(path, data)
            self.writer.write(path, data)
            return True

    def _list(self, rel: str, *, dirs: bool) -> list[str]:
        """Names of the safe-id children of a folder (directories or files), sorted."""
        path = self._abs(rel)
        with self._io("list", path):
            try:
                entries = self.fs.ls(path, detail=True)
            except FileNotFoundError:
                return []
        kind = "directory" if dirs else "file"
        found = (posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == kind)
        # Temp files (".name.tmp") and anything else that is not an id are not ours to show.
        return sorted(name for name in found if is_safe_id(name))


def _safe_relpath(path: str) -> str:
    """Check every segment of a store-relative path, so it cannot leave the store."""
    parts = path.split("/")
    for part in parts:
        check_id(part, "store path segment")
    return "/".join(parts)
