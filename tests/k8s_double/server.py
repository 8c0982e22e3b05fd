"""The double's HTTP API: the paths and verbs the official ``kubernetes`` client uses."""

from __future__ import annotations

import contextlib
import functools
import json
import re
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import referencing
from kubernetes_validate import utils as k8s_schemas

from tests.k8s_double.objects import ApiError, Obj, now_rfc3339
from tests.k8s_double.sidecars import check_probe, is_sidecar

K8S_VERSION = "1.31.0"  # the schema version created objects are validated against
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>batch)/v1)/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)"
    r"(?:/(?P<name>[^/]+)(?:/(?P<sub>log|status))?)?$"
)


@dataclass(frozen=True)
class Resource:
    plural: str
    group: str
    kind: str
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/v1" if self.group else "v1"

    def singular(self, name: str) -> str:
        return f'{self.plural}{"." + self.group if self.group else ""} "{name}"'


_RO = frozenset({"get", "list", "watch"})
_RW = frozenset({"create", "get", "list", "watch", "delete"})
RESOURCES = {
    ("batch", "jobs"): Resource("jobs", "batch", "Job", _RW),
    ("", "pods"): Resource("pods", "", "Pod", _RO),
    ("", "secrets"): Resource("secrets", "", "Secret", _RW),
    ("", "configmaps"): Resource("configmaps", "", "ConfigMap", _RW),
}


def status_body(code: int, reason: str, message: str) -> Obj:
    ok = code < 400
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if ok else "Failure",
        "message": message,
        "reason": "" if ok else reason,
        "code": code,
    }


def _check_labels(labels: dict[str, str]) -> None:
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (
            (prefix and not _DNS_SUBDOMAIN.match(prefix))
            or len(name) > 63
            or not _LABEL_NAME.match(name)
        ):
            raise ApiError(
                422, "Invalid", f"metadata.labels: Invalid value: {key!r}: bad label key"
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ApiError(
                422, "Invalid", f"metadata.labels: Invalid value: {value!r}: bad label value"
            )


@functools.cache
def _validator(kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """kubernetes-validate's strict schema of a kind, loaded once (it re-reads it per call)."""
    folder = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    group = api_version.replace("/", "-")
    schema = k8s_schemas.schema_contents(f"{folder}/{kind.lower()}-{group}.json", K8S_VERSION)
    definitions = k8s_schemas.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = referencing.Resource.from_contents(definitions) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_new(res: Resource, ns: str, obj: Obj) -> None:
    """Reject what the real API server rejects, plus what the double cannot run."""
    if obj.get("kind") != res.kind or obj.get("apiVersion") != res.api_version:
        raise ApiError(400, "BadRequest", f"expected {res.api_version} {res.kind}")
    meta = obj.get("metadata") or {}
    if meta.get("namespace") not in (None, ns):
        raise ApiError(400, "BadRequest", "the namespace of the object does not match the request")
    error = jsonschema.exceptions.best_match(_validator(res.kind, res.api_version).iter_errors(obj))
    if error is not None:
        where = ".".join(str(p) for p in error.path)
        raise ApiError(422, "Invalid", f"{res.kind}: {where}: {error.message}")
    name = meta.get("name") or meta.get("generateName", "x")
    limit = 63 if res.plural == "jobs" else 253  # a Job's name becomes a label value
    pattern = _DNS_LABEL if res.plural == "jobs" else _DNS_SUBDOMAIN
    if len(name) > limit or not pattern.match(name.rstrip("-") or "x"):
        raise ApiError(422, "Invalid", f"metadata.name: Invalid value: {name!r}")
    _check_labels(meta.get("labels") or {})
    if res.plural == "jobs":
        _check_job(obj)


def _check_job(job: Obj) -> None:
    spec = job["spec"]
    _check_labels((spec["template"].get("metadata") or {}).get("labels") or {})
    if (
        spec.get("backoffLimit") != 0
        or spec.get("parallelism", 1) != 1
        or spec.get("completions", 1) != 1
    ):
        raise ApiError(
            422,
            "Invalid",
            "not emulated: the double runs one pod per Job "
            "(backoffLimit: 0, parallelism and completions 1)",
        )
    pod = spec["template"]["spec"]
    if pod.get("restartPolicy") != "Never":
        raise ApiError(422, "Invalid", "not emulated: restartPolicy other than Never")
    if len(pod["containers"]) != 1:
        raise ApiError(422, "Invalid", "not emulated: pods with more than one main container")
    for init in pod.get("initContainers") or []:
        if not is_sidecar(init):
            raise ApiError(
                422,
                "Invalid",
                "not emulated: init containers that run to completion (only native sidecars, "
                "restartPolicy: Always)",
            )
    for container in [*(pod.get("initContainers") or []), *pod["containers"]]:
        problem = check_probe(container, sidecar=is_sidecar(container))
        if problem is not None:
            raise ApiError(422, "Invalid", f"not emulated: {problem}")


class Handler(BaseHTTPRequestHandler):
    """Routes requests to the store and the kubelet of the :class:`KubeDouble` serving it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stalls
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        return

    # --- plumbing -------------------------------------------------------------------------
    def _send(self, code: int, body: Obj | str) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header(
            "Content-Type", "text/plain" if isinstance(body, str) else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_chunks(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _route(self, verb: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            m = _PATH.match(url.path)
            res = RESOURCES.get((m.group("group") or "", m.group("res"))) if m else None
            if m is None or res is None:
                raise ApiError(404, "NotFound", f"the server could not find {url.path}")
            for unsupported in ("fieldSelector", "dryRun"):
                if unsupported in query:
                    raise ApiError(400, "BadRequest", f"not emulated by the double: {unsupported}")
            body = json.loads(raw) if raw else {}
            self._dispatch(verb, res, m.group("ns"), m.group("name"), m.group("sub"), query, body)
        except ApiError as exc:
            self._send(exc.code, status_body(exc.code, exc.reason, exc.message))
        except json.JSONDecodeError as exc:
            self._send(400, status_body(400, "BadRequest", f"invalid JSON body: {exc}"))
        except Exception as exc:  # a bug in the double: answer 500 so the test shows it
            self._send(500, status_body(500, "InternalError", f"double: {exc!r}"))
            raise

    def do_GET(self) -> None:
        self._route("get")

    def do_POST(self) -> None:
        self._route("create")

    def do_DELETE(self) -> None:
        self._route("delete")

    def do_PUT(self) -> None:
        self._route("update")

    def do_PATCH(self) -> None:
        self._route("patch")

    # --- verbs ----------------------------------------------------------------------------
    def _dispatch(
        self,
        verb: str,
        res: Resource,
        ns: str,
        name: str | None,
        sub: str | None,
        query: dict[str, str],
        body: Obj,
    ) -> None:
        if verb == "get" and name is None:
            verb = "watch" if query.get("watch") in ("true", "1", "True") else "list"
        if verb not in res.verbs or (sub == "log" and res.plural != "pods"):
            raise ApiError(405, "MethodNotAllowed", f"{verb} {res.plural} is not emulated")
        if verb == "create":
            if name is not None:
                raise ApiError(405, "MethodNotAllowed", "POST to a named object")
            return self._create(res, ns, body)
        if verb == "list":
            return self._list(res, ns, query)
        if verb == "watch":
            return self._watch(res, ns, query)
        assert name is not None
        if sub == "log":
            return self._log(ns, name, query)
        if verb == "delete":
            return self._delete(res, ns, name, query, body)
        obj = self.server.double.store.get(res.plural, ns, name)
        if obj is None:
            raise ApiError(404, "NotFound", f"{res.singular(name)} not found")
        self._send(200, obj)

    def _create(self, res: Resource, ns: str, body: Obj) -> None:
        validate_new(res, ns, body)
        store = self.server.double.store
        created = store.create(res.plural, ns, body, res.singular(body["metadata"].get("name", "")))
        if res.plural == "jobs":
            self.server.double.kubelet.start_job(ns, created)
        self._send(201, created)

    def _list(self, res: Resource, ns: str, query: dict[str, str]) -> None:
        items, rv = self.server.double.store.items(res.plural, ns, query.get("labelSelector"))
        listed = {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": {"resourceVersion": str(rv)},
            "items": items,
        }
        self._send(200, listed)

    def _watch(self, res: Resource, ns: str, query: dict[str, str]) -> None:
        store, selector = self.server.double.store, query.get("labelSelector")
        timeout = float(query.get("timeoutSeconds") or 1800)
        self._start_chunks("application/json")
        try:
            initial, after = store.watch_start(
                res.plural, ns, selector, query.get("resourceVersion")
            )
            for event in initial:
                self._chunk(json.dumps({"type": event.type, "object": event.obj}).encode() + b"\n")
            end = time.monotonic() + timeout
            while not store.closed and time.monotonic() < end:
                for event in store.wait_events(
                    res.plural, ns, selector, after, min(0.25, max(end - time.monotonic(), 0))
                ):
                    self._chunk(
                        json.dumps({"type": event.type, "object": event.obj}).encode() + b"\n"
                    )
                    after = event.rv
        except ApiError as exc:  # e.g. 410 Gone: the real server sends it as an ERROR event
            error = {"type": "ERROR", "object": status_body(exc.code, exc.reason, exc.message)}
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._chunk(json.dumps(error).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            return
        # The client may have closed a quiet watch: nothing to tell it then.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._chunk(b"")

    def _log(self, ns: str, name: str, query: dict[str, str]) -> None:
        double = self.server.double
        pod = double.store.get("pods", ns, name)
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        if query.get("previous") in ("true", "True"):
            raise ApiError(400, "BadRequest", "not emulated by the double: previous")
        container, statuses, log = self._log_of(pod, query.get("container"))
        waiting = (
            statuses[0]["state"].get("waiting") if statuses else {"reason": "ContainerCreating"}
        )
        if waiting is not None:
            raise ApiError(
                400,
                "BadRequest",
                f'container "{container}" in pod "{name}" is waiting '
                f"to start: {waiting.get('reason')}",
            )
        if query.get("follow") not in ("true", "True"):
            text = log.read_text(errors="replace")
            if query.get("tailLines"):
                text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]) :])
            return self._send(200, text)
        self._follow(ns, name, log)

    def _log_of(self, pod: Obj, wanted: str | None) -> tuple[str, list[Obj], Path]:
        """The container a log request names (default: the main one), its status and log."""
        folder = self.server.double.workdir / pod["metadata"]["namespace"] / pod["metadata"]["name"]
        main = pod["spec"]["containers"][0]["name"]
        if wanted in (None, "", main):
            return main, pod["status"].get("containerStatuses") or [], folder / "log"
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if wanted not in inits:
            raise ApiError(
                400,
                "BadRequest",
                f"container {wanted} is not valid for pod {pod['metadata']['name']}",
            )
        statuses = pod["status"].get("initContainerStatuses") or []
        return wanted, [s for s in statuses if s["name"] == wanted], folder / f"log.{wanted}"

    def _follow(self, ns: str, name: str, log: Path) -> None:
        store, sent = self.server.double.store, 0
        self._start_chunks("text/plain")
        try:
            while True:
                pod = store.get("pods", ns, name)
                done = pod is None or pod["status"].get("phase") in ("Succeeded", "Failed")
                data = log.read_bytes()[sent:]
                if data:
                    self._chunk(data)
                    sent += len(data)
                if done or store.closed:
                    break
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            return
        self._chunk(b"")

    def _delete(self, res: Resource, ns: str, name: str, query: dict[str, str], body: Obj) -> None:
        store = self.server.double.store
        obj = store.get(res.plural, ns, name)
        if obj is None:
            raise ApiError(404, "NotFound", f"{res.singular(name)} not found")
        if res.plural != "jobs":
            store.delete(res.plural, ns, name)
            return self._send(200, status_body(200, "", "deleted"))
        # batch/v1 Jobs default to orphaning their pods, as on a real API server.
        policy = query.get("propagationPolicy") or body.get("propagationPolicy") or "Orphan"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise ApiError(400, "BadRequest", f"invalid propagationPolicy {policy!r}")
        if obj["metadata"].get("deletionTimestamp"):
            return self._send(200, obj)
        if policy == "Foreground":

            def mark(job: Obj) -> None:
                job["metadata"].update(
                    deletionTimestamp=now_rfc3339(), finalizers=["foregroundDeletion"]
                )

            marked = store.update("jobs", ns, name, mark) or obj
            threading.Thread(
                target=self.server.double.collect_job, args=(ns, name, True), daemon=True
            ).start()
            return self._send(200, marked)
        store.delete("jobs", ns, name)
        if policy == "Background":
            threading.Thread(
                target=self.server.double.collect_job, args=(ns, name, False), daemon=True
            ).start()
        self._send(200, status_body(200, "", "deleted"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    double: Any  # the KubeDouble

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up (closing its connection pool, ending a watch) is no error here.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def make_server(double: Any) -> _Server:
    """An HTTP server for ``double`` on a free loopback port (bound to port 0)."""
    server = _Server(("127.0.0.1", 0), Handler)
    server.double = double
    return server
