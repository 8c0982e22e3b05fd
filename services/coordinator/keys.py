"""The coordinator's step-signing public key, published in the run store for workers.

A worker with no configured trusted keys (``AGENTIC_STEP_TRUSTED_KEYS``) trusts the keys
found under ``keys/`` of its run store (:mod:`agentic.bus.signing`). A leader publishes its
own there before it dispatches anything, and removes keys no coordinator has published for
longer than the events are kept (``AGENTIC_EVENTS_MAX_AGE_S``): a step message older than
that belongs to a run whose events are gone too.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from agentic.bus.signing import Signer
from agentic.contracts import utcnow
from services.lifecycle import persist

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

# A leader publishes its key again this often, so that a standby taking over after weeks
# does not remove the key of the messages its predecessor queued last.
REPUBLISH_EVERY_S = 3600.0


async def publish_signer(
    store: RunStore, signer: Signer, identity: str, *, stopping: asyncio.Event, max_age_s: float
) -> None:
    """Record ``signer``'s public key in the store and forget keys unused for ``max_age_s``."""
    info = {"coordinator_id": identity, "published_at": utcnow().isoformat()}
    await persist(
        "publishing the step-signing key",
        lambda: asyncio.to_thread(store.publish_signer, signer.public_key, info),
        stopping=stopping,
    )
    try:
        await asyncio.to_thread(_forget_old, store, signer.public_key, max_age_s)
    except Exception as exc:  # pruning is housekeeping: the next leader tries again
        log.warning("removing old step-signing keys failed: %s", exc)


def _forget_old(store: RunStore, own: str, max_age_s: float) -> None:
    oldest = utcnow() - timedelta(seconds=max_age_s)
    for key in store.signers():
        if key == own:
            continue
        info = store.signer_info(key) or {}
        try:
            published = datetime.fromisoformat(str(info.get("published_at")))
        except ValueError:
            continue  # not ours to judge: leave it
        if published < oldest:
            store.forget_signer(key)


async def keep_published(
    store: RunStore, signer: Signer, identity: str, *, stopping: asyncio.Event, max_age_s: float
) -> None:
    """Publish the key again every :data:`REPUBLISH_EVERY_S` until ``stopping``."""
    while not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), REPUBLISH_EVERY_S)
        except TimeoutError:
            await publish_signer(store, signer, identity, stopping=stopping, max_age_s=max_age_s)
