"""Credentials of a stack that lives on this machine (``agentic up``, the embedded stack).

Each start makes a fresh set (:func:`agentic.bus.auth.write_credentials`) in a private
temporary folder: nats-server gets the public keys, each service process the seed of its own
identity and the step-signing keys it needs, and the client its own seed. Nothing outlives
the stack but, for ``agentic up``, the client credential it leaves for its user
(:mod:`agentic.bus.credentials`), removed when the stack stops.

Such a stack is its user's alone (loopback only, a credential nobody else can read), so its
services accept workflows with inline providers (``AGENTIC_ALLOW_INLINE_PROVIDERS``), as the
user's own YAML files have them, unless that setting is explicitly false in the environment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from agentic.bus.auth import CredentialSet, write_credentials
from agentic.settings import Settings

INLINE_ENV = "AGENTIC_ALLOW_INLINE_PROVIDERS"


class StackCredentials:
    """A fresh credential set for one local stack, removed by :meth:`close`.

    Args:
        pools: Worker pools the stack's workers serve.
    """

    def __init__(self, pools: tuple[str, ...] = ("default",)) -> None:
        self._folder = Path(tempfile.mkdtemp(prefix="agentic-credentials-"))
        self.set: CredentialSet = write_credentials(self._folder, pools=pools, scaler=False)

    @property
    def server_conf(self) -> Path:
        """nats-server's configuration (``-c``): the users and their permissions."""
        return self.set.server_conf

    @property
    def client_seed(self) -> Path:
        """The client's seed file."""
        return self.set.seed_file("client")

    def env_for(self, role: str, *, pool: str = "default") -> dict[str, str]:
        """The ``AGENTIC_*`` variables of a service process of ``role`` (coordinator, worker)."""
        env = {INLINE_ENV: _inline_default()}
        if role == "coordinator":
            env["AGENTIC_NATS_NKEY_SEED_FILE"] = str(self.set.seed_file("coordinator"))
            env["AGENTIC_STEP_SIGNING_SEED_FILE"] = str(self.set.signing_seed)
        else:
            env["AGENTIC_NATS_NKEY_SEED_FILE"] = str(self.set.seed_file(f"worker-{pool}"))
            env["AGENTIC_STEP_TRUSTED_KEYS"] = self.set.signing_public_key
        return env

    def settings_for(self, settings: Settings, role: str, *, pool: str = "default") -> Settings:
        """``settings`` as a service of ``role`` in this stack sees them."""
        env = self.env_for(role, pool=pool)
        update: dict[str, object] = {
            name.removeprefix("AGENTIC_").lower(): value for name, value in env.items()
        }
        update["allow_inline_providers"] = env[INLINE_ENV] == "true"
        return settings.model_copy(update=update)

    def client_settings(self, settings: Settings) -> Settings:
        """``settings`` of this stack's client."""
        return settings.model_copy(update={"nats_nkey_seed_file": str(self.client_seed)})

    def close(self) -> None:
        """Remove every file of the set."""
        shutil.rmtree(self._folder, ignore_errors=True)


def _inline_default(env: Mapping[str, str] | None = None) -> str:
    """``true`` unless the user set ``AGENTIC_ALLOW_INLINE_PROVIDERS`` to something false."""
    value = (os.environ if env is None else env).get(INLINE_ENV)
    if value is None:
        return "true"
    return "true" if value.strip().lower() in ("1", "true", "yes", "on") else "false"
