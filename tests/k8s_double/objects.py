"""The double's object store: objects, resourceVersions, watch history and label selectors."""

from __future__ import annotations

import copy
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiError(Exception):
    """An error the HTTP layer turns into a ``Status`` response."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


# --- label selectors ------------------------------------------------------------------------
_SET_OP = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\((.*)\)\s*$")


def _split_requirements(selector: str) -> list[str]:
    """Split on commas that are not inside ``(…)``."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _requirement(req: str) -> Callable[[dict[str, str]], bool]:
    """One requirement of a label selector as a predicate over labels."""
    if m := _SET_OP.match(req):
        key, values = m.group(1), {v.strip() for v in m.group(3).split(",")}
        inside = m.group(2) == "in"
        return lambda labels: (labels.get(key) in values) == inside
    if "!=" in req:
        key, value = (part.strip() for part in req.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in req:
        key, value = (part.strip() for part in req.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if req.startswith("!"):
        absent = req[1:].strip()
        return lambda labels: absent not in labels
    if re.fullmatch(r"[A-Za-z0-9_./-]+", req):
        return lambda labels: req in labels
    raise ApiError(400, "BadRequest", f"unable to parse requirement: {req!r}")


def parse_selector(selector: str | None) -> Callable[[dict[str, str]], bool]:
    """A predicate over labels for ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``in``, ``notin``."""
    checks = [_requirement(req) for req in _split_requirements(selector or "")]
    return lambda labels: all(check(labels) for check in checks)


# --- the store ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    rv: int
    resource: str
    namespace: str
    type: str
    obj: Obj


class ObjectStore:
    """Namespaced objects by resource, with a global resourceVersion and an event history."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.RLock())
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._events: list[Event] = []
        self._rv = 0
        self._oldest_rv = 0  # watches from before this get 410 Gone
        self.closed = False
        self.silent = False  # watches stay open but deliver nothing (a "silent" watch)

    def _bump(self, resource: str, ns: str, kind: str, obj: Obj) -> Obj:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._events.append(Event(self._rv, resource, ns, kind, copy.deepcopy(obj)))
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def create(self, resource: str, ns: str, obj: Obj, singular: str) -> Obj:
        with self._cond:
            meta = obj.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            key = (resource, ns, meta.get("name", ""))
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{singular} "{key[2]}" already exists')
            meta.update(namespace=ns, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
            self._objects[key] = obj
            return self._bump(resource, ns, "ADDED", obj)

    def get(self, resource: str, ns: str, name: str) -> Obj | None:
        with self._cond:
            obj = self._objects.get((resource, ns, name))
            return copy.deepcopy(obj) if obj is not None else None

    def items(self, resource: str, ns: str, selector: str | None = None) -> tuple[list[Obj], int]:
        match = parse_selector(selector)
        with self._cond:
            items = [
                copy.deepcopy(o)
                for (r, n, _), o in sorted(self._objects.items())
                if r == resource and n == ns and match(o["metadata"].get("labels") or {})
            ]
            return items, self._rv

    def update(
        self, resource: str, ns: str, name: str, change: Callable[[Obj], None]
    ) -> Obj | None:
        """Apply ``change`` to the stored object; None when it is gone."""
        with self._cond:
            obj = self._objects.get((resource, ns, name))
            if obj is None:
                return None
            change(obj)
            return self._bump(resource, ns, "MODIFIED", obj)

    def delete(self, resource: str, ns: str, name: str) -> Obj | None:
        with self._cond:
            obj = self._objects.pop((resource, ns, name), None)
            return None if obj is None else self._bump(resource, ns, "DELETED", obj)

    def compact(self) -> None:
        """Forget the history: a watch from an older resourceVersion now gets 410 Gone."""
        with self._cond:
            self._oldest_rv = self._rv
            self._events.clear()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def watch_start(
        self, resource: str, ns: str, selector: str | None, rv: str | None
    ) -> tuple[list[Event], int]:
        """Initial events of a watch and the resourceVersion it continues from.

        Without a resourceVersion (or with "0") the watch starts with a synthetic ADDED event
        per existing object, as the real API server does.
        """
        with self._cond:
            if rv in (None, "", "0"):
                items, current = self.items(resource, ns, selector)
                return [Event(current, resource, ns, "ADDED", o) for o in items], current
            try:
                start = int(rv)
            except ValueError as exc:
                raise ApiError(400, "BadRequest", f"invalid resourceVersion {rv!r}") from exc
            if start < self._oldest_rv:
                raise ApiError(
                    410, "Expired", f"too old resource version: {start} ({self._oldest_rv})"
                )
            return [], start

    def wait_events(
        self, resource: str, ns: str, selector: str | None, after: int, timeout: float
    ) -> list[Event]:
        """Events after ``after`` that match; waits up to ``timeout`` for the first one."""
        match = parse_selector(selector)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.closed:
                    return []
                if after < self._oldest_rv:
                    raise ApiError(410, "Expired", f"too old resource version: {after}")
                found = [
                    e
                    for e in self._events
                    if e.rv > after
                    and e.resource == resource
                    and e.namespace == ns
                    and match(e.obj["metadata"].get("labels") or {})
                ]
                if found and not self.silent:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
