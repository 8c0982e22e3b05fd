"""The client credential a local stack leaves for its user.

``agentic up`` starts nats-server with fresh credentials every time; its client seed goes to
``<AGENTIC_NATS_CREDENTIALS_DIR>/<host>_<port>.nk`` (the folder 0700, the file 0600: only you
can read it) and is removed when the stack stops. A client connecting to that URL with no
credential configured (``agentic run``, ``cancel``, ``show``) uses it: no extra flag.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from agentic.settings import Settings


def credential_path(settings: Settings, url: str) -> Path | None:
    """Where the client credential of the server at ``url`` lives (None: not a host:port URL)."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    try:
        port = parts.port or 4222
    except ValueError:
        return None
    if not parts.hostname:
        return None
    folder = Path(settings.nats_credentials_dir).expanduser()
    return folder / f"{parts.hostname}_{port}.nk"


def local_credential(settings: Settings, servers: Iterable[str]) -> Path | None:
    """The client credential a local stack left for one of ``servers``, if any."""
    for server in servers:
        path = credential_path(settings, server)
        if path is not None and path.is_file():
            return path
    return None


def leave_client_credential(settings: Settings, url: str, seed: bytes) -> Path:
    """Write the client seed of the server at ``url`` for this user's clients to find."""
    from agentic.bus.auth import write_private

    path = credential_path(settings, url)
    if path is None:
        raise ValueError(f"not a host:port URL: {url!r}")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    write_private(path, seed)
    return path


def remove_credential(path: Path) -> None:
    """Remove a credential left by :func:`leave_client_credential` (the stack stopped)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
