"""A local copy of the objects matching a label selector, kept current by a watch and a relist.

:class:`WatchedObjects` is a minimal informer for one resource (Jobs or Pods) and one label
selector. Kubernetes watches go quiet on long runs (DESIGN §10), so it never relies on one
alone:

* a watch thread lists once, then watches from the list's ``resourceVersion``; when the
  server ends the watch (``timeoutSeconds``) or the connection drops, it resumes from the
  last ``resourceVersion`` it saw; a ``410 Gone`` (history compacted) means list again;
* :meth:`WatchedObjects.relist`, which the owner calls periodically (the reconcile), lists
  and merges: newer versions win, objects missing from the list are forgotten unless they
  were seen after the list was requested.

Every change calls ``on_change`` so a waiting caller wakes at once. Objects are API JSON.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from agentic.backends.kubernetes.api import Obj, api_status, list_objects

log = logging.getLogger(__name__)

WATCH_TIMEOUT_S = 240  # the server ends each watch after this; we resume from its version
READ_SLACK_S = 30.0  # a watch connection silent for longer than this is dead: reconnect
FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0


class _Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


def _version(obj: Obj) -> int | None:
    # resourceVersions are opaque, but every API server in use (etcd) makes them integers;
    # comparing them lets a relist never overwrite a newer watched state with an older one.
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


def _lines(response: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())


class WatchedObjects:
    """The objects of one resource matching ``selector`` in ``namespace``.

    Args:
        list_fn: The client's namespaced list method (``list_namespaced_job``, …); it also
            serves the watch (``watch=True``).
        namespace: The namespace to watch.
        selector: The label selector.
        on_change: Called (on the watch or relist thread) after any change.
        what: Names the resource in logs.
    """

    def __init__(
        self,
        list_fn: Callable[..., Any],
        namespace: str,
        selector: str,
        *,
        on_change: Callable[[], None] = lambda: None,
        what: str = "objects",
    ) -> None:
        self._list_fn = list_fn
        self._namespace = namespace
        self._selector = selector
        self._on_change = on_change
        self._what = what
        self._lock = threading.Lock()
        self._objects: dict[str, Obj] = {}
        self._gone: dict[str, Obj] = {}
        self._seen_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()
        """Set once a first list has succeeded."""

    # --- reading ------------------------------------------------------------------------

    def get(self, name: str) -> Obj | None:
        """The object called ``name``, or None when it is not (or no longer) there."""
        with self._lock:
            return self._objects.get(name)

    def gone(self, name: str) -> Obj | None:
        """The last state of ``name`` if it was deleted, else None."""
        with self._lock:
            return self._gone.get(name)

    def items(self) -> list[Obj]:
        """Every object now known."""
        with self._lock:
            return list(self._objects.values())

    # --- writing ------------------------------------------------------------------------

    def put(self, obj: Obj) -> None:
        """Record ``obj`` (e.g. the answer to our own create) before any event reports it."""
        self._merge(obj)
        self._on_change()

    def relist(self) -> str:
        """List, merge into the local copy and return the list's resourceVersion."""
        asked_at = time.monotonic()
        items, version = list_objects(self._list_fn, self._namespace, self._selector)
        listed = {item["metadata"]["name"] for item in items}
        for item in items:
            self._merge(item)
        with self._lock:
            for name in list(self._objects):
                # Something first seen after the list was asked for is newer than the list.
                if name not in listed and self._seen_at.get(name, 0.0) < asked_at:
                    self._gone[name] = self._objects.pop(name)
        self.synced.set()
        self._on_change()
        return version

    def _merge(self, obj: Obj) -> bool:
        name = obj["metadata"]["name"]
        new = _version(obj)
        with self._lock:
            for known in (self._objects.get(name), self._gone.get(name)):
                old = None if known is None else _version(known)
                if old is not None and new is not None and old >= new:
                    return False
            self._gone.pop(name, None)
            self._objects[name] = obj
            self._seen_at.setdefault(name, time.monotonic())
            return True

    def _apply(self, kind: str, obj: Obj) -> None:
        if kind in ("ADDED", "MODIFIED"):
            changed = self._merge(obj)
        elif kind == "DELETED":
            name = obj["metadata"]["name"]
            with self._lock:
                self._objects.pop(name, None)
                self._gone[name] = obj
            changed = True
        else:
            return
        if changed:
            self._on_change()

    # --- the watch thread ---------------------------------------------------------------

    def start(self) -> WatchedObjects:
        """Start the watch thread (a daemon: it never keeps the process alive)."""
        self._thread = threading.Thread(target=self._run, name=f"watch-{self._what}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """End the watch: its open connection is shut down, the thread joined."""
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        version: str | None = None
        backoff = FIRST_BACKOFF_S
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self._watch(version)
                backoff = FIRST_BACKOFF_S
            except _Expired:
                log.info("%s watch: resourceVersion expired (410), listing again", self._what)
                version = None
            except Exception as exc:  # connection reset, API server restart, timeouts
                if self._stop.is_set():
                    return
                if api_status(exc) == 410:
                    version = None
                    continue
                log.warning("%s watch failed (%s); retrying in %.1f s", self._what, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _watch(self, version: str) -> str:
        """Apply the events of one watch from ``version``; return the last version seen."""
        response = self._list_fn(
            self._namespace,
            label_selector=self._selector,
            watch=True,
            resource_version=version,
            timeout_seconds=WATCH_TIMEOUT_S,
            _preload_content=False,
            _request_timeout=(5.0, WATCH_TIMEOUT_S + READ_SLACK_S),
        )
        self._response = response
        try:
            for line in _lines(response):
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise _Expired
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                if event.get("type") != "BOOKMARK":
                    self._apply(event.get("type", ""), obj)
                version = obj.get("metadata", {}).get("resourceVersion") or version
                if self._stop.is_set():
                    break
        finally:
            self._response = None
            response.release_conn()
        return version
