"""Connecting to NATS with the options the settings name (URLs, credentials, TLS).

Every agentic process connects through :func:`connect`, so authentication, TLS and
reconnect behaviour are the same for the CLI, the coordinator, workers and the scaler.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from nats.aio.client import Client as NATS

from agentic import names
from agentic.bus.credentials import local_credential
from agentic.errors import BusError, ConfigError
from agentic.redact import mask_url
from agentic.settings import Settings

log = logging.getLogger(__name__)

# Attempts per server for the first connection: a wrong URL or bad credentials should fail in
# a few seconds with the server's reason, not hang. Once connected, reconnects never give up.
INITIAL_CONNECT_ATTEMPTS = 3
# Short enough that a restarted server is back in use within a second or two.
RECONNECT_WAIT_S = 1
CONNECT_TIMEOUT_S = 2


def server_urls(value: str) -> list[str]:
    """The URLs of a comma-separated ``AGENTIC_NATS_URL`` (blanks ignored)."""
    return [u.strip() for u in value.split(",") if u.strip()]


async def connect(
    settings: Settings, *, name: str, url: str | None = None, identity: str | None = None
) -> NATS:
    """Connect to NATS as configured by ``settings``.

    Args:
        settings: ``nats_url`` (comma-separated list), ``nats_user``/``nats_password``,
            ``nats_token``, ``nats_nkey_seed_file``, ``nats_creds_file``,
            ``nats_inbox_prefix`` and ``nats_tls_*`` are used.
        name: the connection name servers show in their monitoring (``connz``).
        url: overrides ``settings.nats_url`` (e.g. the URL of an embedded server).
        identity: the service this process is (``coordinator``, ``worker-<pool>``,
            ``scaler``): its replies and deliveries come to inboxes of its own
            (:func:`agentic.names.inbox_prefix`). ``None`` for a client, which uses
            ``_INBOX`` and, when no credential is configured, the one ``agentic up`` left
            for its server (:func:`agentic.bus.credentials.local_credential`).

    Returns:
        A connected client. It reconnects forever after a disconnect (logging each
        disconnect and reconnect); close it with ``await nc.close()`` or ``nc.drain()``.

    Raises:
        ConfigError: no URL, or a credentials/TLS file that does not exist.
        BusError: no server accepted the connection (the reason, e.g. an authorization
            violation, is in the message).
    """
    servers = server_urls(url if url is not None else settings.nats_url or "")
    if not servers:
        raise ConfigError("no NATS server: set AGENTIC_NATS_URL (comma-separated URLs)")
    errors: list[BaseException] = []
    options = _auth_options(settings, servers, client=identity is None)
    options |= _tls_options(settings, servers)
    prefix = settings.nats_inbox_prefix or (names.inbox_prefix(identity) if identity else None)
    if prefix:
        options["inbox_prefix"] = prefix
    nc = NATS()
    try:
        await nc.connect(
            servers=servers,
            name=name,
            allow_reconnect=True,
            max_reconnect_attempts=INITIAL_CONNECT_ATTEMPTS,
            reconnect_time_wait=RECONNECT_WAIT_S,
            connect_timeout=CONNECT_TIMEOUT_S,
            error_cb=_error_cb(name, errors),
            disconnected_cb=_disconnected_cb(name, nc),
            reconnected_cb=_reconnected_cb(name, nc),
            closed_cb=_closed_cb(name),
            **options,
        )
    except Exception as exc:  # nats-py raises several unrelated types here
        reason = _reason(errors, exc)
        shown = ", ".join(mask_url(server) for server in servers)
        raise BusError(
            f"cannot connect to NATS at {shown}: {_describe(reason)}", cause=exc
        ) from exc
    # nats-py has one limit for the first connection and for reconnects; we want a bounded
    # first attempt and unbounded reconnects, so lift the limit once connected.
    nc.options["max_reconnect_attempts"] = -1
    return nc


def _auth_options(settings: Settings, servers: list[str], *, client: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if settings.nats_user is not None:
        options["user"] = settings.nats_user
        options["password"] = settings.nats_password or ""
    if settings.nats_token is not None:
        options["token"] = settings.nats_token
    if settings.nats_nkey_seed_file is not None:
        _require_nkeys("AGENTIC_NATS_NKEY_SEED_FILE")
        options["nkeys_seed"] = _existing(settings.nats_nkey_seed_file, "NKEY_SEED_FILE")
    if settings.nats_creds_file is not None:
        _require_nkeys("AGENTIC_NATS_CREDS_FILE")
        options["user_credentials"] = _existing(settings.nats_creds_file, "CREDS_FILE")
    if client and not options and not any(urlsplit(s).username for s in servers):
        found = local_credential(settings, servers)
        if found is not None:
            options["nkeys_seed"] = str(found)
    return options


def _tls_options(settings: Settings, servers: list[str]) -> dict[str, Any]:
    files = (settings.nats_tls_ca_file, settings.nats_tls_cert_file, settings.nats_tls_key_file)
    wants_tls = any(u.startswith("tls://") for u in servers)
    if not wants_tls and all(f is None for f in files):
        return {}
    ca = _existing(settings.nats_tls_ca_file, "TLS_CA_FILE") if files[0] else None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if settings.nats_tls_cert_file is not None:
        cert = _existing(settings.nats_tls_cert_file, "TLS_CERT_FILE")
        key = _existing(settings.nats_tls_key_file, "TLS_KEY_FILE") if files[2] else None
        context.load_cert_chain(cert, key)
    elif settings.nats_tls_key_file is not None:
        raise ConfigError("AGENTIC_NATS_TLS_KEY_FILE is set without AGENTIC_NATS_TLS_CERT_FILE")
    return {"tls": context}


def _existing(path: str | None, setting: str) -> str:
    if path is None or not Path(path).is_file():
        raise ConfigError(f"AGENTIC_NATS_{setting}: no such file: {path}")
    return path


def _require_nkeys(setting: str) -> None:
    try:
        import nkeys  # noqa: F401  (nats-py imports it lazily; fail early and clearly)
    except ImportError as exc:
        raise ConfigError(
            f"{setting} needs the 'nkeys' package: pip install 'nats-py[nkeys]'"
        ) from exc


def _reason(errors: list[BaseException], final: BaseException) -> BaseException:
    """Why connecting failed: the server's latest own error (e.g. an authorization
    violation) explains a socket reset that follows it, so it wins over socket errors."""
    from_server = [e for e in errors if not isinstance(e, OSError)]
    if from_server:
        return from_server[-1]
    return errors[-1] if errors else final


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_cb(name: str, errors: list[BaseException]) -> Any:
    async def on_error(exc: Exception) -> None:
        errors.append(exc)
        del errors[:-5]  # only the latest reasons matter
        log.warning("NATS connection %r: %s", name, _describe(exc))

    return on_error


def _disconnected_cb(name: str, nc: NATS) -> Any:
    async def on_disconnected() -> None:
        if nc.is_closed:  # our own close(), not a lost connection
            return
        log.warning("NATS connection %r lost; reconnecting", name)

    return on_disconnected


def _reconnected_cb(name: str, nc: NATS) -> Any:
    async def on_reconnected() -> None:
        url = nc.connected_url
        shown = mask_url(url.geturl()) if url else "?"
        log.info("NATS connection %r reconnected to %s", name, shown)

    return on_reconnected


def _closed_cb(name: str) -> Any:
    async def on_closed() -> None:
        log.info("NATS connection %r closed", name)

    return on_closed


__all__ = ["NATS", "connect", "server_urls"]
