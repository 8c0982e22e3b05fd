"""Model servers for the tests: a ThreadingHTTPServer on a free loopback port whose POST
handler the test gives, and the replies they share (JSON, a status, silence)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

OnPost = Callable[[BaseHTTPRequestHandler, bytes], None]
"""Answers one POST: ``(handler, request body)``."""


@contextlib.contextmanager
def http_server(on_post: OnPost) -> Iterator[str]:
    """Serve POSTs with ``on_post`` until the block ends; yields the server's root URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            on_post(self, self.rfile.read(int(self.headers.get("content-length", 0))))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def send(
    handler: BaseHTTPRequestHandler, code: int, body: Any, headers: dict[str, str] | None = None
) -> None:
    """Answer with ``code`` and ``body`` as JSON, plus ``headers``."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def hang(handler: BaseHTTPRequestHandler) -> None:
    """Never answer (longer than any request timeout of the tests)."""
    time.sleep(60)
