"""Who may do what on the bus: one NATS identity per role, permissions nats-server enforces.

Every process connects as an identity of one role, authenticated with an nkey (an ed25519
key pair: the process holds the seed, the server only the public key) and limited to the
subjects its role needs, so that nats-server itself refuses everything else:

===========  ==================================================================================
role         may
===========  ==================================================================================
coordinator  answer submits and cancels; publish steps, every run event, dead letters, kill and
             queued-work notices; manage agentic's streams, consumers and the lease bucket
worker       pull its pools' ``workers-<pool>`` consumers and acknowledge their messages;
             publish step-level events only (``step_started``, ``step_progress``,
             ``step_succeeded``, ``step_failed``); read the events stream (to number events);
             hear kill notices
client       submit and cancel runs; follow run events (an ordered consumer on
             ``AGENTIC_EVENTS``)
scaler       read the ``workers-<pool>`` consumers (monitoring); hear queued-work notices
===========  ==================================================================================

Services get inboxes of their own (``_agentic_inbox.<identity>``, :func:`agentic.names.
inbox_prefix`): a client, which must read its own replies on ``_INBOX.>``, can read neither a
worker's step deliveries nor the coordinator's API replies.

:func:`write_credentials` makes a fresh set: one seed file per identity (readable by its owner
only) and ``auth.conf``, the ``authorization`` block to give nats-server (``include``). It is
what ``agentic up``, the embedded stack and ``agentic credentials`` use; docs/security.md
explains how to add clients.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import nkeys

from agentic import names
from agentic.errors import ConfigError
from agentic.ids import check_id

Role = Literal["coordinator", "worker", "client", "scaler"]
ROLES: tuple[Role, ...] = ("coordinator", "worker", "client", "scaler")

AUTH_CONF = "auth.conf"
SERVER_CONF = "nats-server.conf"
SEED_SUFFIX = ".nk"
SIGNING_SEED = "step-signing.nk"
SIGNING_PUBLIC = "step-signing.pub"
# Streams (and the KV bucket's stream) the coordinator manages: its JetStream rights stop there.
_COORDINATOR_STREAMS = (
    names.EVENTS_STREAM,
    names.STEPS_STREAM,
    names.DLQ_STREAM,
    names.ADVISORIES_STREAM,
    f"KV_{names.COORDINATOR_BUCKET}",
    f"KV_{names.CLAIMS_BUCKET}",
    f"KV_{names.BUDGETS_BUCKET}",
)


@dataclass(frozen=True)
class Identity:
    """One NATS user: its name (the seed file's stem), role, public key and, for a worker,
    the pools it may take steps of."""

    name: str
    role: Role
    public_key: str
    pools: tuple[str, ...] = ()


def new_seed(prefix: int = nkeys.PREFIX_BYTE_USER) -> bytes:
    """A fresh nkey seed (``SU…`` for a user)."""
    return bytes(nkeys.encode_seed(os.urandom(32), prefix))


def public_key(seed: bytes) -> str:
    """The public key (``U…``) of an nkey seed.

    Raises:
        ConfigError: not an nkey seed.
    """
    try:
        return bytes(nkeys.from_seed(bytearray(seed.strip())).public_key).decode()
    except (nkeys.NkeysError, ValueError) as exc:
        raise ConfigError(f"not an nkey seed: {type(exc).__name__}") from exc


def permissions(identity: Identity) -> dict[str, Any]:
    """The nats-server ``permissions`` of ``identity`` (allow lists: all else is denied)."""
    inbox = names.inbox_prefix(identity.name) + ".>"
    if identity.role == "coordinator":
        return {
            "publish": {"allow": _coordinator_publish()},
            "subscribe": {"allow": [names.SUBMIT_SUBJECT, names.CANCEL_SUBJECT, inbox]},
            # Replies to the requests it answers, and nothing else of anyone's inbox.
            "allow_responses": True,
        }
    if identity.role == "worker":
        return {
            "publish": {"allow": _worker_publish(identity.pools)},
            "subscribe": {"allow": [names.TERMINATE_SUBJECTS, inbox]},
        }
    if identity.role == "scaler":
        consumers = [
            f"$JS.API.CONSUMER.INFO.{names.STEPS_STREAM}.{names.workers_consumer(pool)}"
            for pool in identity.pools
        ] or [f"$JS.API.CONSUMER.INFO.{names.STEPS_STREAM}.*"]
        return {
            "publish": {"allow": [*consumers, f"$JS.API.STREAM.INFO.{names.STEPS_STREAM}"]},
            "subscribe": {"allow": [names.QUEUED_SUBJECTS, inbox]},
        }
    return {
        "publish": {"allow": _client_publish()},
        "subscribe": {"allow": ["_INBOX.>"]},
    }


def _coordinator_publish() -> list[str]:
    allow = [
        names.STEPS_SUBJECTS,
        names.EVENTS_SUBJECTS,
        names.DLQ_SUBJECTS,
        names.TERMINATE_SUBJECTS,
        names.QUEUED_SUBJECTS,
        f"$KV.{names.COORDINATOR_BUCKET}.>",
        "$JS.API.INFO",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.LIST",
    ]
    for stream in _COORDINATOR_STREAMS:
        allow += [
            f"$JS.API.STREAM.*.{stream}",
            f"$JS.API.STREAM.MSG.*.{stream}",
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.CONSUMER.*.{stream}",
            f"$JS.API.CONSUMER.*.{stream}.>",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>",
        ]
    return allow


def _worker_publish(pools: Sequence[str]) -> list[str]:
    allow: list[str] = []
    for pool in pools or ("*",):
        consumer = names.workers_consumer(pool) if pool != "*" else "*"
        allow += [
            f"$JS.API.CONSUMER.INFO.{names.STEPS_STREAM}.{consumer}",
            f"$JS.API.CONSUMER.MSG.NEXT.{names.STEPS_STREAM}.{consumer}",
            f"$JS.ACK.{names.STEPS_STREAM}.{consumer}.>",
        ]
    claims = names.CLAIMS_BUCKET
    for pool in pools or ("*",):
        # Its own pool's claims (agentic.bus.claims): write, and read the latest.
        allow += [
            f"$KV.{claims}.{pool}.*",
            f"$JS.API.DIRECT.GET.KV_{claims}.$KV.{claims}.{pool}.*",
        ]
    allow.append(f"$JS.API.STREAM.INFO.KV_{claims}")
    # Provider budgets are shared by every pool (agentic.bus.budget): slots and counters.
    budgets = names.BUDGETS_BUCKET
    allow += [
        f"$KV.{budgets}.>",
        f"$JS.API.DIRECT.GET.KV_{budgets}.$KV.{budgets}.>",
        f"$JS.API.STREAM.INFO.KV_{budgets}",
    ]
    for stream in (names.EVENTS_STREAM, names.STEPS_STREAM, names.DLQ_STREAM):
        allow.append(f"$JS.API.STREAM.INFO.{stream}")  # `agentic worker --check`
    allow.append(f"$JS.API.STREAM.MSG.GET.{names.EVENTS_STREAM}")  # the run's last event
    for event_type in names.WORKER_EVENT_TYPES:
        allow += names.event_type_patterns(event_type)
    return allow


def _client_publish() -> list[str]:
    events = names.EVENTS_STREAM
    return [
        names.SUBMIT_SUBJECT,
        names.CANCEL_SUBJECT,
        f"$JS.API.STREAM.INFO.{events}",
        f"$JS.API.CONSUMER.CREATE.{events}",
        f"$JS.API.CONSUMER.CREATE.{events}.>",
        f"$JS.API.CONSUMER.DELETE.{events}.>",
        f"$JS.API.CONSUMER.INFO.{events}.>",
        f"$JS.FC.{events}.>",
    ]


def authorization(identities: Iterable[Identity]) -> dict[str, Any]:
    """The nats-server ``authorization`` block: one nkey user per identity."""
    return {
        "users": [
            {"nkey": identity.public_key, "permissions": permissions(identity)}
            for identity in identities
        ]
    }


def render_auth_conf(identities: Iterable[Identity]) -> str:
    """``auth.conf``: the ``authorization`` block in nats-server's configuration syntax
    (which accepts JSON), for ``include`` from the server's main configuration."""
    body = json.dumps(authorization(identities), indent=2)
    return (
        "# agentic: one nkey user per role, with the permissions of agentic.bus.auth\n"
        f"authorization: {body}\n"
    )


@dataclass
class CredentialSet:
    """The files of one set of credentials (see :func:`write_credentials`)."""

    directory: Path
    identities: list[Identity] = field(default_factory=list)
    signing_public_key: str = ""

    @property
    def auth_conf(self) -> Path:
        return self.directory / AUTH_CONF

    @property
    def signing_seed(self) -> Path:
        return self.directory / SIGNING_SEED

    @property
    def server_conf(self) -> Path:
        """A nats-server configuration that only includes ``auth.conf`` (for ``-c``)."""
        return self.directory / SERVER_CONF

    def seed_file(self, name: str) -> Path:
        """The seed file of identity ``name`` (``coordinator``, ``worker-default`` …)."""
        if name not in {identity.name for identity in self.identities}:
            raise KeyError(name)
        return self.directory / f"{name}{SEED_SUFFIX}"


def write_credentials(
    directory: str | Path,
    *,
    pools: Sequence[str] = ("default",),
    clients: Sequence[str] = ("client",),
    scaler: bool = True,
) -> CredentialSet:
    """Write a fresh set of credentials into ``directory`` (created, mode 0700).

    One seed per identity: ``coordinator.nk``, ``worker-<pool>.nk`` per pool, one per client
    name, ``scaler.nk``; the step-signing key pair (``step-signing.nk`` for the coordinator,
    ``step-signing.pub`` for workers); ``auth.conf`` for nats-server and
    ``nats-server.conf``, which only includes it. Every file is mode 0600. Existing files
    are replaced: every call is a new set.

    Raises:
        ConfigError: an unsafe pool or client name.
    """
    folder = Path(directory)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    wanted: list[tuple[str, Role, tuple[str, ...]]] = [("coordinator", "coordinator", ())]
    wanted += [(f"worker-{names.check_pool(p)}", "worker", (p,)) for p in dict.fromkeys(pools)]
    wanted += [(check_id(c, "client name"), "client", ()) for c in dict.fromkeys(clients)]
    if scaler:
        wanted.append(("scaler", "scaler", tuple(dict.fromkeys(pools))))
    credentials = CredentialSet(folder)
    for name, role, role_pools in wanted:
        seed = new_seed()
        write_private(folder / f"{name}{SEED_SUFFIX}", seed + b"\n")
        credentials.identities.append(Identity(name, role, public_key(seed), role_pools))
    signing = new_seed(nkeys.PREFIX_BYTE_SERVER)
    write_private(folder / SIGNING_SEED, signing + b"\n")
    credentials.signing_public_key = _signing_public_key(signing)
    write_private(folder / SIGNING_PUBLIC, credentials.signing_public_key.encode() + b"\n")
    write_private(folder / AUTH_CONF, render_auth_conf(credentials.identities).encode())
    write_private(folder / SERVER_CONF, f'include "{AUTH_CONF}"\n'.encode())
    return credentials


def _signing_public_key(seed: bytes) -> str:
    return bytes(nkeys.from_seed(bytearray(seed)).public_key).decode()


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file only its owner can read (0600), replacing it."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)
