"""`agentic credentials`: a fresh set of NATS credentials and step-signing keys for a deployment.

Writes one nkey seed per identity, the step-signing key pair, and the nats-server
``authorization`` block (``auth.conf``) that lets in exactly those identities with the
permissions of their roles (:mod:`agentic.bus.auth`). docs/security.md and deploy/README.md
say where each file goes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from agentic.cli import app
from agentic.cli._common import config_errors

Out = Annotated[Path, typer.Option("--out", help="Folder to write (created, mode 0700).")]
Pools = Annotated[
    list[str] | None,
    typer.Option("--pool", help="A worker pool to make a worker identity for (repeat)."),
]
Clients = Annotated[
    list[str] | None,
    typer.Option("--client", help="A client identity to make (repeat; one per user)."),
]


@app.command("credentials")
@config_errors()
def credentials(out: Out, pools: Pools = None, clients: Clients = None) -> None:
    """Make NATS identities for every role, the step-signing keys and nats-server's auth.conf.

    Every run makes a new set: give nats-server the new auth.conf and each process its new
    seed together.
    """
    from agentic.bus.auth import write_credentials

    made = write_credentials(out, pools=pools or ["default"], clients=clients or ["client"])
    lines = [f"wrote {made.directory} (every file readable by you alone):"]
    for identity in made.identities:
        lines.append(f"  {identity.name}.nk  {identity.role:<11}  {identity.public_key}")
    lines += [
        "  step-signing.nk  the coordinator's step-signing seed (AGENTIC_STEP_SIGNING_SEED_FILE)",
        f"  step-signing.pub workers' trusted key (AGENTIC_STEP_TRUSTED_KEYS="
        f"{made.signing_public_key})",
        "  auth.conf        nats-server's authorization block (include it in its config)",
    ]
    typer.echo("\n".join(lines))
