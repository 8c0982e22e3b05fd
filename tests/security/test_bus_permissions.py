"""Every role on the bus may do what it needs and nothing else: nats-server refuses the rest.

A real nats-server runs with the authorization block `agentic credentials` writes
(agentic.bus.auth); each role connects with its own nkey and tries every action the threat
model forbids it. A refusal is nats-server's own "permissions violation" (or, for a
connection without a credential, "authorization violation"), and nothing reaches a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS

from agentic import names
from agentic.bus import EmbeddedNats, connect, provision
from agentic.bus.auth import CredentialSet, write_credentials
from agentic.bus.budget import BusBudgets, provision_budgets
from agentic.bus.claims import Claim, claim_key, provision_claims
from agentic.bus.coordination import provision_coordinator
from agentic.bus.lease import LEADER_KEY, lease_bucket
from agentic.contracts import Limits, Usage
from agentic.errors import BusError
from agentic.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.procs]

DOTTED_RUN = "team.a.run-1"  # run ids may contain dots: every depth must be covered


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> CredentialSet:
    return write_credentials(tmp_path_factory.mktemp("creds"), pools=("default", "gpu"))


@pytest.fixture(scope="module")
def server(
    credentials: CredentialSet, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedNats]:
    store = tmp_path_factory.mktemp("js")
    with EmbeddedNats(store_dir=store, config_file=credentials.server_conf) as running:
        yield running


class Peer:
    """A connection of one identity that records what nats-server refused it."""

    def __init__(self, nc: NATS, errors: list[str]) -> None:
        self.nc = nc
        self.errors = errors

    async def refused(self, what: str, subject: str, timeout: float = 2.0) -> bool:
        """Whether nats-server reported a permissions violation for ``what`` on ``subject``."""
        wanted = f"permissions violation for {what} to {subject.lower()}"
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if any(wanted in e.lower().replace('"', "") for e in self.errors):
                return True
            await asyncio.sleep(0.02)
        return False

    async def publish_refused(self, subject: str, payload: bytes = b"{}") -> bool:
        await self.nc.publish(subject, payload)
        await self.nc.flush()
        return await self.refused("publish", subject)

    async def subscribe_refused(self, subject: str) -> bool:
        await self.nc.subscribe(subject)
        await self.nc.flush()
        return await self.refused("subscription", subject)


async def _peer(server: EmbeddedNats, seed: Path | None, identity: str | None) -> Peer:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        server.url,
        nkeys_seed=str(seed) if seed else None,
        inbox_prefix=names.inbox_prefix(identity) if identity else "_INBOX",
        error_cb=on_error,
        max_reconnect_attempts=1,
        allow_reconnect=False,
    )
    return Peer(nc, errors)


@pytest.fixture
async def coordinator(server: EmbeddedNats, credentials: CredentialSet) -> AsyncIterator[Peer]:
    peer = await _peer(server, credentials.seed_file("coordinator"), "coordinator")
    js = peer.nc.jetstream()
    settings = Settings(nats_url=server.url)
    await provision(js, settings, pools=["default", "gpu"])
    await provision_coordinator(js, settings)
    await provision_claims(js, settings)
    await provision_budgets(js, settings)
    yield peer
    await peer.nc.close()


@pytest.fixture
async def worker(server: EmbeddedNats, credentials: CredentialSet, coordinator: Peer):
    async with _role(server, credentials, "worker-default", "worker-default") as peer:
        yield peer


@pytest.fixture
async def client(server: EmbeddedNats, credentials: CredentialSet, coordinator: Peer):
    async with _role(server, credentials, "client", None) as peer:
        yield peer


@pytest.fixture
async def scaler(server: EmbeddedNats, credentials: CredentialSet, coordinator: Peer):
    async with _role(server, credentials, "scaler", "scaler") as peer:
        yield peer


@contextlib.asynccontextmanager
async def _role(
    server: EmbeddedNats, credentials: CredentialSet, name: str, identity: str | None
) -> AsyncIterator[Peer]:
    peer = await _peer(server, credentials.seed_file(name), identity)
    try:
        yield peer
    finally:
        await peer.nc.close()


async def test_a_client_without_a_credential_is_not_authorized(
    server: EmbeddedNats, tmp_path: Path
) -> None:
    with pytest.raises(BusError, match=r"(?i)authorization violation"):
        await connect(
            Settings(nats_url=server.url, nats_credentials_dir=str(tmp_path)), name="anonymous"
        )


async def test_a_seed_the_server_does_not_know_is_not_authorized(
    server: EmbeddedNats, tmp_path: Path
) -> None:
    stranger = write_credentials(tmp_path / "other")  # a valid nkey, not in auth.conf
    settings = Settings(
        nats_url=server.url, nats_nkey_seed_file=str(stranger.seed_file("coordinator"))
    )
    with pytest.raises(BusError, match=r"(?i)authorization violation"):
        await connect(settings, name="stranger", identity="coordinator")


@pytest.mark.parametrize(
    "subject",
    [
        names.steps_subject("default"),  # run any step on a worker
        names.events_subject("victim", "succeeded"),  # end someone's run
        names.events_subject("victim", "step_succeeded"),  # forge a step outcome
        names.events_subject(DOTTED_RUN, "step_ready"),
        names.dlq_subject("default"),
        names.terminate_subject("victim"),  # kill someone's step
        f"$KV.{names.COORDINATOR_BUCKET}.{LEADER_KEY}",  # take the coordinators' lease
        f"$JS.API.CONSUMER.CREATE.{names.STEPS_STREAM}.spy.{names.STEPS_SUBJECTS}",
        f"$JS.API.STREAM.MSG.GET.{names.STEPS_STREAM}",  # read a queued step
        f"$JS.API.STREAM.DELETE.{names.EVENTS_STREAM}",
        f"$JS.API.STREAM.PURGE.{names.EVENTS_STREAM}",
        f"$JS.API.CONSUMER.MSG.NEXT.{names.STEPS_STREAM}.workers-default",  # take a step
    ],
)
async def test_a_client_may_not_publish_steps_events_notices_or_touch_the_streams(
    client: Peer, subject: str
) -> None:
    assert await client.publish_refused(subject)


@pytest.mark.parametrize(
    "subject",
    [
        names.STEPS_SUBJECTS,  # read every step (prompts, prior outputs)
        names.TERMINATE_SUBJECTS,
        names.SUBMIT_SUBJECT,  # read other clients' requests
        f"{names.inbox_prefix('worker-default')}.>",  # a worker's step deliveries
        f"{names.inbox_prefix('coordinator')}.>",
    ],
)
async def test_a_client_may_not_listen_to_steps_or_to_the_services_inboxes(
    client: Peer, subject: str
) -> None:
    assert await client.subscribe_refused(subject)


async def test_a_client_may_submit_and_follow_its_runs_events(
    client: Peer, coordinator: Peer
) -> None:
    answered = asyncio.Event()

    async def answer(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(json.dumps({"run_id": "r1"}).encode())
        answered.set()

    await coordinator.nc.subscribe(names.SUBMIT_SUBJECT, cb=answer)
    await coordinator.nc.flush()
    reply = await client.nc.request(names.SUBMIT_SUBJECT, b'{"workflow_ref": "demo"}', timeout=5)
    assert json.loads(reply.data)["run_id"] == "r1" and answered.is_set()

    await coordinator.nc.jetstream().publish(names.events_subject(DOTTED_RUN, "planned"), b"{}")
    sub = await client.nc.jetstream().subscribe(
        names.run_timeline_filter(DOTTED_RUN),
        stream=names.EVENTS_STREAM,
        ordered_consumer=True,
    )
    msg = await sub.next_msg(timeout=5)
    assert msg.subject == names.events_subject(DOTTED_RUN, "planned")
    await sub.unsubscribe()
    assert not client.errors


@pytest.mark.parametrize(
    "event_type", ["requested", "planned", "step_ready", "step_retrying", "succeeded", "failed"]
)
async def test_a_worker_may_not_publish_run_level_events(worker: Peer, event_type: str) -> None:
    for run_id in ("victim", DOTTED_RUN):
        worker.errors.clear()
        assert await worker.publish_refused(names.events_subject(run_id, event_type))


async def test_a_worker_publishes_step_events_of_runs_with_dotted_ids(worker: Peer) -> None:
    js = worker.nc.jetstream()
    for event_type in names.WORKER_EVENT_TYPES:
        ack = await js.publish(names.events_subject(DOTTED_RUN, event_type), b"{}", timeout=5)
        assert ack.stream == names.EVENTS_STREAM
    assert not worker.errors


@pytest.mark.parametrize(
    "subject",
    [
        names.steps_subject("default"),
        names.dlq_subject("default"),
        names.terminate_subject("victim"),
        names.SUBMIT_SUBJECT,
        names.CANCEL_SUBJECT,
        f"$KV.{names.COORDINATOR_BUCKET}.{LEADER_KEY}",
        f"$JS.API.STREAM.CREATE.{names.STEPS_STREAM}",
        f"$JS.API.CONSUMER.CREATE.{names.STEPS_STREAM}.spy.{names.STEPS_SUBJECTS}",
        f"$JS.API.CONSUMER.MSG.NEXT.{names.STEPS_STREAM}.workers-gpu",  # another pool's steps
        f"$JS.API.STREAM.MSG.GET.{names.STEPS_STREAM}",
        f"$JS.API.STREAM.MSG.DELETE.{names.STEPS_STREAM}",
    ],
)
async def test_a_worker_may_not_dispatch_submit_or_take_another_pools_steps(
    worker: Peer, subject: str
) -> None:
    assert await worker.publish_refused(subject)


async def test_a_worker_claims_attempts_of_its_own_pool_only(worker: Peer, client: Peer) -> None:
    kv = await worker.nc.jetstream().key_value(names.CLAIMS_BUCKET)
    claim = Claim(kv, claim_key("default", "run-1", "step", 1), 1, "worker-default")

    assert await claim.take() and await claim.keep()
    assert not worker.errors
    other_pool = claim_key("gpu", "run-1", "step", 1)
    assert await worker.publish_refused(f"$KV.{names.CLAIMS_BUCKET}.{other_pool}")
    assert await client.publish_refused(f"$KV.{names.CLAIMS_BUCKET}.{claim.key}")


async def test_a_worker_takes_and_gives_back_budget_slots_and_a_client_cannot(
    worker: Peer, client: Peer
) -> None:
    kv = await worker.nc.jetstream().key_value(names.BUDGETS_BUCKET)
    budgets = BusBudgets(kv, "worker-default", lease_s=30)
    limits = Limits(concurrency=1, requests_per_minute=10, tokens_per_minute=1000)

    lease = await budgets.try_acquire("model", limits)
    assert lease is not None and lease.slot is not None
    await budgets.keep(lease)
    await budgets.release(lease, Usage(requests=3, prompt_tokens=5))
    assert not worker.errors
    assert await client.publish_refused(f"$KV.{names.BUDGETS_BUCKET}.{lease.provider_id}")


async def test_a_worker_pulls_and_acknowledges_its_own_pools_steps(
    worker: Peer, coordinator: Peer
) -> None:
    await coordinator.nc.jetstream().publish(names.steps_subject("default"), b"step")
    sub = await worker.nc.jetstream().pull_subscribe_bind(
        durable=names.workers_consumer("default"), stream=names.STEPS_STREAM
    )
    (msg,) = await sub.fetch(1, timeout=5)
    await msg.in_progress()
    await msg.ack()
    await worker.nc.flush()
    assert msg.data == b"step" and not worker.errors


@pytest.mark.parametrize(
    "subject",
    [
        names.steps_subject("default"),
        names.events_subject("victim", "succeeded"),
        names.SUBMIT_SUBJECT,
        f"$KV.{names.COORDINATOR_BUCKET}.{LEADER_KEY}",
        f"$JS.API.CONSUMER.MSG.NEXT.{names.STEPS_STREAM}.workers-default",
        f"$JS.API.STREAM.MSG.GET.{names.STEPS_STREAM}",
    ],
)
async def test_the_scaler_only_monitors(scaler: Peer, subject: str) -> None:
    assert await scaler.publish_refused(subject)


async def test_the_scaler_reads_consumers_and_hears_queued_notices_not_steps(
    scaler: Peer,
) -> None:
    info = await scaler.nc.jetstream().consumer_info(
        names.STEPS_STREAM, names.workers_consumer("default")
    )
    assert info.name == "workers-default"
    await scaler.nc.subscribe(names.queued_subject("default"))
    await scaler.nc.flush()
    assert not scaler.errors
    assert await scaler.subscribe_refused(names.steps_subject("default"))


async def test_only_the_coordinator_writes_the_lease(
    coordinator: Peer, worker: Peer, client: Peer, scaler: Peer
) -> None:
    kv = await lease_bucket(coordinator.nc.jetstream(), ttl_s=10)
    revision = await kv.put(LEADER_KEY, b"coordinator-1")
    for peer in (worker, client, scaler):
        assert await peer.publish_refused(f"$KV.{names.COORDINATOR_BUCKET}.{LEADER_KEY}", b"evil")
    entry = await kv.get(LEADER_KEY)
    assert (entry.value, entry.revision) == (b"coordinator-1", revision)


async def test_the_coordinator_may_not_read_client_replies_or_steps_it_did_not_ask_for(
    coordinator: Peer,
) -> None:
    assert await coordinator.subscribe_refused("_INBOX.>")
    coordinator.errors.clear()
    assert await coordinator.subscribe_refused(names.STEPS_SUBJECTS)
    coordinator.errors.clear()
    assert await coordinator.publish_refused("$JS.API.STREAM.CREATE.SOMEONE_ELSES")


async def test_nothing_a_refused_peer_sent_reached_a_stream(
    coordinator: Peer, client: Peer
) -> None:
    js = coordinator.nc.jetstream()
    before = (await js.stream_info(names.STEPS_STREAM)).state.messages
    assert await client.publish_refused(names.steps_subject("default"), b"evil")
    with pytest.raises(nats.errors.TimeoutError):
        await client.nc.jetstream().publish(names.steps_subject("default"), b"evil", timeout=1)
    assert (await js.stream_info(names.STEPS_STREAM)).state.messages == before
