"""Prometheus metrics of the services: a registry per service, served on ``/metrics``.

``agentic coordinator``, ``worker`` and ``scaler`` each keep their metrics in a registry of
their own (never prometheus_client's global one: tests run several services in one process)
and serve it with prometheus_client's WSGI app, in a thread of its own, when
``AGENTIC_METRICS_PORT`` is set (docs/observability.md, "Metrics")::

    endpoint = serve_metrics(settings, registry, "worker")   # None when metrics are off
    ...
    endpoint.stop()

An endpoint that cannot bind its port is logged and left out: metrics never stop a service.
Label values come from catalogs and errors, never from run ids, and each label keeps at most
:data:`MAX_LABEL_VALUES` distinct values (:class:`BoundedLabel`), so no input can make the
number of series grow without bound.
"""

from __future__ import annotations

import logging
import socket
import threading
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

if TYPE_CHECKING:
    from agentic.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 9464
"""The port ``deploy/`` serves metrics on, in every agentic pod."""
MAX_LABEL_VALUES = 200
"""Distinct values one label keeps; later new ones read :data:`OTHER`."""
MAX_LABEL_CHARS = 100
OTHER = "other"
UNKNOWN = "unknown"
STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Histogram buckets of step durations, in seconds: from a scripted step to an hour."""
STOP_WAIT_S = 2.0
POLL_S = 0.1
"""How often the server looks for a stop: a service's stop waits at most this long for it."""


class BoundedLabel:
    """The values of one label: each cut to :data:`MAX_LABEL_CHARS`, and at most ``limit``
    distinct ones; a new value past the limit reads :data:`OTHER`, an empty one
    :data:`UNKNOWN`.

    Args:
        limit: How many distinct values the label keeps.
    """

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self._limit = limit
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: object) -> str:
        text = str(value)[:MAX_LABEL_CHARS] if value not in (None, "") else UNKNOWN
        if text in self._kept:
            return text
        with self._lock:
            if len(self._kept) >= self._limit:
                return OTHER
            self._kept.add(text)
        return text


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per scrape, none outliving the process."""

    daemon_threads = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    """No access log on stderr: a scrape every 15 s is not news."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


class MetricsEndpoint:
    """``http://host:port/metrics`` of one registry: prometheus_client's WSGI app, served in
    a daemon thread.

    Args:
        registry: What the endpoint serves.
        host: The address it binds to.
        port: The port; 0 takes a free one (see :attr:`url`).
        service: Which service serves it (for the log).
    """

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int, service: str) -> None:
        self.registry = registry
        self._host, self._port, self._service = host, port, service
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Bind and serve; False (logged) when the port cannot be bound."""
        server_class = _Server6 if ":" in self._host else _Server
        try:
            server = make_server(
                self._host,
                self._port,
                make_wsgi_app(self.registry),
                server_class=server_class,
                handler_class=_Quiet,
            )
        except OSError as exc:
            log.warning(
                "%s serves no metrics: cannot bind %s:%d (%s)",
                self._service,
                self._host,
                self._port,
                exc,
            )
            return False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": POLL_S},
            name=f"{self._service}-metrics",
            daemon=True,
        )
        self._thread.start()
        log.info("%s metrics at %s", self._service, self.url)
        return True

    @property
    def port(self) -> int | None:
        """The port bound (a free one when 0 was asked for); None before :meth:`start`."""
        return None if self._server is None else int(self._server.server_port)

    @property
    def url(self) -> str | None:
        """Where Prometheus scrapes this endpoint; None before :meth:`start`."""
        if self.port is None:
            return None
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and release the port."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(STOP_WAIT_S)


def serve_metrics(
    settings: Settings, registry: CollectorRegistry, service: str
) -> MetricsEndpoint | None:
    """Serve ``registry`` on ``AGENTIC_METRICS_HOST:AGENTIC_METRICS_PORT``.

    Returns:
        The endpoint, or None when metrics are off (no port set) or the port is taken.
    """
    if settings.metrics_port is None:
        return None
    endpoint = MetricsEndpoint(
        registry, host=settings.metrics_host, port=settings.metrics_port, service=service
    )
    return endpoint if endpoint.start() else None
