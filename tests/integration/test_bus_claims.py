"""Claims of step attempts (agentic.bus.claims) against a real nats-server: the newest
delivery of an attempt is the one that runs."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext

from agentic import names
from agentic.bus.claims import Claim, claim_key, provision_claims
from agentic.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.procs]


async def claim_of(js: JetStreamContext, key: str, delivery: int, worker: str) -> Claim:
    kv = await provision_claims(js, Settings(step_ack_wait_s=30))
    return Claim(kv, key, delivery, worker)


async def test_a_stale_delivery_does_not_run_once_a_newer_one_holds_the_attempt(
    js: JetStreamContext,
) -> None:
    key = claim_key("default", "run-1", "step", 1)
    newer = await claim_of(js, key, 2, "worker-b")
    stale = await claim_of(js, key, 1, "worker-a")

    assert await newer.take()
    assert not await stale.take()  # the message waited in worker-a's buffer
    assert await newer.keep()


async def test_a_newer_delivery_takes_over_at_once_and_the_overtaken_one_learns_it(
    js: JetStreamContext,
) -> None:
    key = claim_key("default", "run-2", "step", 1)
    first = await claim_of(js, key, 1, "worker-a")
    second = await claim_of(js, key, 2, "worker-b")

    assert await first.take()
    assert await second.take()  # worker-a was presumed dead: no waiting for an expiry
    assert not await first.keep()  # worker-a was only frozen: it stops at its next beat
    assert await second.keep()
    kv = await js.key_value(names.CLAIMS_BUCKET)
    entry = await kv.get(key)
    assert json.loads(entry.value or b"") == {"delivery": 2, "worker": "worker-b"}


async def test_a_claim_written_again_after_its_reply_was_lost_is_kept(js: JetStreamContext) -> None:
    key = claim_key("default", "run-3", "step", 1)
    claim = await claim_of(js, key, 1, "worker-a")
    assert await claim.take()
    kv = await js.key_value(names.CLAIMS_BUCKET)
    entry = await kv.get(key)
    await kv.update(key, entry.value or b"", last=entry.revision)  # applied, reply lost

    assert await claim.keep()


def test_keys_are_per_pool_and_attempt_and_never_ambiguous() -> None:
    assert claim_key("gpu", "a.b", "c", 1) != claim_key("gpu", "a", "b.c", 1)
    assert claim_key("gpu", "r", "s", 1) != claim_key("gpu", "r", "s", 2)
    assert claim_key("gpu", "r", "s", 1).startswith("gpu.")
    assert claim_key("default", "r", "s", 1).split(".")[1] == claim_key("gpu", "r", "s", 1)[4:]
