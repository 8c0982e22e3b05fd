"""``agentic scaler`` end to end: a real nats-server and coordinator, the API server double.

The scaler creates ``agentic worker --burst`` Jobs; the double runs each as a local process
that pulls the step from JetStream, runs it (a step process importing CrewAI) and exits once
the queue is empty. The run store is a local directory mounted as the PVC at its own path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agentic import names
from agentic.backends.nats import NatsBackend
from agentic.bus import EmbeddedNats, connect, provision
from agentic.k8s.jobs import worker_selector
from agentic.k8s.scaler_rule import count_running
from agentic.settings import Settings
from agentic.store import open_store
from services.scaler import ScalerService
from tests.e2e.k8s_cluster import NS, PVC, Cluster, cluster_settings
from tests.factories import bus_spec, two_steps
from tests.integration.nats_stack import sample, scrape
from tests.k8s_double import KubeDouble, wait_for
from tests.k8s_double.podenv import default_base_env
from tests.parity import run_workflow

pytestmark = [pytest.mark.slow, pytest.mark.k8s, pytest.mark.nats, pytest.mark.procs]

# These tests submit inline scripted providers; the trust boundary itself is tested in
# tests/security. The scaler passes the installation's setting on to the worker Jobs.
INLINE = {"AGENTIC_ALLOW_INLINE_PROVIDERS": "true"}

UNPULLABLE = "registry.invalid/agentic-worker:missing"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, nats_server: EmbeddedNats
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scaler")
    store_dir = root / "store"
    store_dir.mkdir()
    double = KubeDouble(
        pvc_dirs={PVC: store_dir},
        unpullable_images=[UNPULLABLE],
        workdir=root / "double",
        kill_grace_s=1.0,
        base_env=default_base_env(),
    )
    with double:
        client = double.api_client()
        settings = cluster_settings(
            store_dir,
            nats_url=nats_server.url,
            scaler_poll_interval_s=1.0,
            scaler_max_jobs=3,
            allow_inline_providers=True,
        )
        yield Cluster(double, client, str(store_dir), settings)
        client.close()


@pytest.fixture(scope="module")
def coordinator(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``agentic coordinator`` as its own process, sharing the run store with the workers."""
    log_path = tmp_path_factory.mktemp("coordinator") / "stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_NATS_URL=cluster.settings.nats_url or "",
        AGENTIC_RUN_STORE_URL=cluster.store_url,
        AGENTIC_LOG_LEVEL="INFO",  # "coordinator ready" is an INFO line
        CREWAI_DISABLE_TELEMETRY="true",
        **INLINE,
    )
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentic", "coordinator"], env=env, stderr=log
        )
    try:
        ready = wait_for(lambda: "coordinator ready" in log_path.read_text(), timeout=60)
        assert ready, log_path.read_text()
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ScalerThread:
    """A :class:`ScalerService` running on its own event loop in a background thread."""

    def __init__(self, settings: Settings, pool: str, api_client: Any) -> None:
        self.service = ScalerService(settings, pool=pool, api_client=api_client)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            async with self.service:
                self._ready.set()
                await self.service.run()

        self._loop.run_until_complete(serve())

    def __enter__(self) -> ScalerService:
        self._thread.start()
        assert self._ready.wait(20), "the scaler did not start"
        return self.service

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self.service.request_stop)
        self._thread.join(timeout=20)
        assert not self._thread.is_alive(), "the scaler did not stop"


def kubeconfig(cluster: Cluster, path: Path) -> Path:
    """A kubeconfig pointing at the double (no credentials: it has no authentication)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "double", "cluster": {"server": cluster.double.url}}],
        "users": [{"name": "tests", "user": {}}],
        "contexts": [{"name": "double", "context": {"cluster": "double", "user": "tests"}}],
        "current-context": "double",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def cli_env(cluster: Cluster, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        KUBECONFIG=str(config),
        AGENTIC_NATS_URL=cluster.settings.nats_url or "",
        AGENTIC_RUN_STORE_URL=cluster.store_url,
        AGENTIC_K8S_STORE_PVC=PVC,
        AGENTIC_K8S_STORE_MOUNT_PATH=cluster.store_url,
        AGENTIC_K8S_NAMESPACE=NS,
        AGENTIC_LOG_LEVEL="INFO",
    )
    return env


def test_a_two_step_workflow_succeeds_on_nats_with_worker_jobs_the_scaler_created(
    cluster: Cluster, coordinator: None
) -> None:
    with ScalerThread(cluster.settings, "default", cluster.api_client) as scaler:
        run = run_workflow(
            NatsBackend(),
            two_steps(topic="kubernetes"),
            {},
            cluster.store_url,
            settings=cluster.settings,
        )

        assert run.record.status == "succeeded", run.record.error
        assert run.outputs == {
            "research": "research says hello to kubernetes",
            "write": "write says hello to kubernetes",
        }
        assert 1 <= scaler.created <= 2  # one burst worker per queued step at most
        store = open_store(cluster.store_url)
        for step_id in ("research", "write"):
            result = store.read_result(run.record.run_id, step_id)
            assert result is not None and result.worker.pod is not None
            assert result.worker.pod.startswith("agentic-worker-default-")
        # Burst workers exit once the queue is empty; the scaler deletes their finished Jobs.
        assert wait_for(lambda: not cluster.jobs(worker_selector("default")), timeout=20)
    assert not cluster.pods(worker_selector("default"))


async def test_the_scaler_refuses_to_scale_a_pool_whose_consumer_does_not_exist(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    nc = await connect(cluster.settings, name="tests")
    try:
        await provision(nc.jetstream(), cluster.settings)  # the streams, not pool "ghost"
        await nc.jetstream().publish(names.steps_subject("ghost"), b"{}")
    finally:
        await nc.close()
    service = ScalerService(cluster.settings, pool="ghost", api_client=cluster.api_client)

    with caplog.at_level(logging.WARNING, logger="services.scaler.service"):
        async with service:
            decision = await service.scale_once()

    assert decision.refused and decision.create == 0
    assert not cluster.jobs(worker_selector("ghost"))
    assert "consumer workers-ghost does not exist" in caplog.text
    assert "refusing to scale" in caplog.text


async def test_the_scaler_subtracts_running_jobs_and_never_exceeds_the_maximum(
    cluster: Cluster,
) -> None:
    # Workers that cannot start (unpullable image) stay running Jobs without taking work.
    settings = cluster.settings.model_copy(
        update={"k8s_image": UNPULLABLE, "scaler_max_jobs": 2, "metrics_port": 0}
    )
    nc = await connect(settings, name="tests")
    try:
        js = nc.jetstream()
        await provision(js, settings, pools=["capped"])
        for n in range(5):
            spec = bus_spec("capped", step_id=f"s{n}")
            await js.publish(names.steps_subject("capped"), spec.model_dump_json().encode())
    finally:
        await nc.close()
    service = ScalerService(settings, pool="capped", api_client=cluster.api_client)

    try:
        async with service:
            first = await service.scale_once()
            second = await service.scale_once()
            assert service.metrics_endpoint is not None and service.metrics_endpoint.url
            scraped = await scrape(service.metrics_endpoint.url)
        jobs = cluster.jobs(worker_selector("capped"))
    finally:
        for job in cluster.jobs(worker_selector("capped")):
            cluster.batch.delete_namespaced_job(
                job["metadata"]["name"], NS, propagation_policy="Foreground"
            )

    assert (first.lag, first.wanted, first.create) == (5, 2, 2)
    assert (second.running, second.create) == (2, 0)
    # What the scaler's /metrics said after the second round.
    assert sample(scraped, "agentic_scaler_queue_lag", pool="capped") == 5
    assert sample(scraped, "agentic_scaler_jobs_wanted", pool="capped") == 2
    assert sample(scraped, "agentic_scaler_jobs_running", pool="capped") == 2
    assert sample(scraped, "agentic_scaler_jobs_created_total", pool="capped") == 2
    assert sample(scraped, "agentic_scaler_rounds_total", pool="capped", result="scaled") == 2
    assert len(jobs) == 2 and count_running(jobs) == 2
    container = jobs[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["worker", "--burst", "--pool", "capped"]


def test_agentic_scaler_check_and_sigterm_through_a_kubeconfig(
    cluster: Cluster, coordinator: None, tmp_path: Path
) -> None:
    env = cli_env(cluster, kubeconfig(cluster, tmp_path / "kubeconfig"))
    agentic = [sys.executable, "-m", "agentic", "scaler"]

    healthy = subprocess.run([*agentic, "--check"], env=env, capture_output=True, text=True)
    ghost = subprocess.run(
        [*agentic, "--check", "--pool", "ghost"], env=env, capture_output=True, text=True
    )
    assert (healthy.returncode, healthy.stdout.strip()) == (0, "healthy"), healthy.stderr
    assert ghost.returncode == 1
    assert "consumer workers-ghost does not exist" in ghost.stderr

    log_path = tmp_path / "scaler.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([*agentic, "--pool", "default"], env=env, stderr=log)
    try:
        assert wait_for(lambda: "ready" in log_path.read_text(), timeout=30), log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped" in log_path.read_text()
