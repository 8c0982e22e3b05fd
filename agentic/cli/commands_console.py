"""`agentic console`: the web console of the run store."""

from __future__ import annotations

from typing import Annotated

import typer

from agentic.cli import app
from agentic.cli._common import StoreOpt, config_errors, load_settings

Port = Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to serve on.")]
Host = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to serve on. Anything but loopback needs AGENTIC_CONSOLE_TOKEN.",
    ),
]


@app.command("console")
@config_errors()
def console(port: Port = 8765, host: Host = "127.0.0.1", store: StoreOpt = None) -> None:
    """Serve the web console: runs, live run pages, start, cancel and replay.

    Exit codes: 0 stopped; 2 bad usage (a non-loopback --host without a token).
    """
    from agentic.console.serve import serve

    settings = load_settings(**({"run_store_url": store} if store else {}))
    serve(settings, host=host, port=port, token=settings.console_token)
