"""Serving the console with uvicorn, in the foreground (``agentic console``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from agentic.console.guard import check_bind

if TYPE_CHECKING:
    from agentic.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def console_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(settings: Settings, *, host: str, port: int, token: str | None) -> None:
    """Serve the console until Ctrl-C or SIGTERM (uvicorn's own handling).

    Raises:
        ConfigError: a non-loopback ``host`` without ``token``.
    """
    import uvicorn

    from agentic.console.app import create_app

    check_bind(host, token)
    app = create_app(settings, token=token)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    server = uvicorn.Server(config)
    print(
        f"agentic console: {console_url(host, port)} (run store {settings.run_store_url})",
        flush=True,
    )
    server.run()
