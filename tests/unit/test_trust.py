"""Registered definitions, run limits, credentials files and the coordinator's heartbeat."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentic.bus.auth import write_credentials
from agentic.bus.credentials import (
    credential_path,
    leave_client_credential,
    local_credential,
    remove_credential,
)
from agentic.bus.signing import Signer
from agentic.catalog import load_catalog, load_workflow
from agentic.catalog.trust import CatalogCache, check_registered, spec_problem, workflow_problems
from agentic.contracts import WorkflowDefinition
from agentic.errors import CatalogError, ConfigError, DocumentTooLargeError, StoreError
from agentic.materialize import SpecFactory, check_run_size, materialize
from agentic.settings import Settings
from agentic.store import open_store
from services.health import Heartbeat, heartbeat_path, stall_problems
from services.lifecycle import persist
from services.worker.gate import Refused, StepGate
from tests.factories import REPO

CATALOG = load_catalog([REPO / "config"])
DEMO = load_workflow("demo", CATALOG)


def definition(**body: object) -> WorkflowDefinition:
    task = {"id": "t", "agent_provider_id": "writer", "description": "d", "expected_output": "o"}
    return WorkflowDefinition.model_validate({"workflow": {"name": "w", "tasks": [task], **body}})


def test_a_workflow_that_names_catalog_providers_is_registered() -> None:
    assert workflow_problems(definition(agent_providers=["writer"]), CATALOG) == []
    assert workflow_problems(DEMO, CATALOG) == []  # resolved by a client from the same catalog


def test_an_inline_provider_is_refused_naming_the_field_and_what_it_sets() -> None:
    evil = {
        **CATALOG.agent_providers["writer"].model_dump(exclude_none=True),
        "id": "writer2",
        "openai_base_url": "http://evil",
        "api_key_env": "SECRET_KEY",
    }
    with pytest.raises(CatalogError) as refused:
        check_registered(definition(agent_providers=[evil]), CATALOG)
    assert refused.value.field == "workflow.workflow.agent_providers[0]"
    assert "openai_base_url, api_key_env" in str(refused.value)


def test_a_provider_that_differs_from_its_catalog_entry_is_inline_too() -> None:
    changed = DEMO.model_copy(
        update={"mcp_providers": [DEMO.mcp_providers[0].model_copy(update={"tools": None})]}
    )
    changed_stdio = changed.mcp_providers[0].model_copy(
        update={"stdio": changed.mcp_providers[0].stdio.model_copy(update={"command": "sh"})}
    )
    problems = workflow_problems(changed.model_copy(update={"mcp_providers": [changed_stdio]}),
                                 CATALOG)  # fmt: skip
    assert [field for field, _ in problems] == ["workflow.mcp_providers[0]"]


def test_a_worker_runs_only_specs_whose_providers_are_its_catalogs() -> None:
    (spec, *_) = materialize(
        DEMO, run_id="r", inputs={}, store_url="memory://x", settings=Settings(), env={}
    )
    assert spec_problem(spec, CATALOG) is None
    other = spec.model_copy(update={"agent_provider": {**spec.agent_provider, "model": "x"}})
    assert "differs from this worker's catalog entry" in (spec_problem(other, CATALOG) or "")
    stranger = spec.model_copy(update={"agent_provider": {**spec.agent_provider, "id": "zz"}})
    assert "not in this worker's catalog" in (spec_problem(stranger, CATALOG) or "")


async def test_the_gate_refuses_a_signed_spec_for_another_store(tmp_path: Path) -> None:
    signer = Signer.generate()
    settings = Settings(step_trusted_keys=signer.public_key, config_dir=str(REPO / "config"))
    store = open_store(str(tmp_path / "mine"))
    gate = StepGate(settings, store, CatalogCache(settings))
    (spec, *_) = materialize(
        DEMO, run_id="r", inputs={}, store_url=str(store.url), settings=settings, env={}
    )

    def message(store_url: str) -> SimpleNamespace:
        data = spec.model_copy(update={"store_url": store_url}).model_dump_json().encode()
        return SimpleNamespace(data=data, headers=signer.headers(data))

    assert (await gate.admit(message(store.url))).run_id == "r"  # type: ignore[arg-type]
    with pytest.raises(Refused, match="run store that is not this worker's"):
        await gate.admit(message("file:///elsewhere"))  # type: ignore[arg-type]


def test_spec_factory_builds_what_materialize_builds() -> None:
    specs = materialize(
        DEMO, run_id="r", inputs={"topic": "t"}, store_url="memory://x", settings=Settings(),
        env={},
    )  # fmt: skip
    factory = SpecFactory(
        DEMO, run_id="r", inputs={"topic": "t"}, store_url="memory://x", settings=Settings()
    )
    assert [factory.spec(s.step_id) for s in specs] == specs


def test_a_run_over_the_limits_is_refused_naming_the_setting() -> None:
    factory = SpecFactory(DEMO, run_id="r", inputs={}, store_url="m", settings=Settings())
    check_run_size(factory, Settings())
    with pytest.raises(ConfigError, match="AGENTIC_MAX_WORKFLOW_TASKS"):
        check_run_size(factory, Settings(max_workflow_tasks=2))
    with pytest.raises(ConfigError, match="AGENTIC_MAX_RUN_SPEC_BYTES"):
        check_run_size(factory, Settings(max_run_spec_bytes=1000))


async def test_a_store_error_that_cannot_succeed_is_not_retried() -> None:
    calls = []

    async def too_large() -> None:
        calls.append(1)
        raise DocumentTooLargeError("run.json is too large")

    with pytest.raises(DocumentTooLargeError):
        await persist("writing", too_large, stopping=asyncio.Event())
    assert len(calls) == 1

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise StoreError("the disk is away")
        return "written"

    assert await persist("writing", flaky, stopping=asyncio.Event()) == "written"


def test_a_credential_set_is_private_and_its_auth_conf_lists_every_identity(tmp_path) -> None:
    made = write_credentials(tmp_path / "c", pools=("default", "gpu"), clients=("alice",))
    names = {identity.name for identity in made.identities}
    assert names == {"coordinator", "worker-default", "worker-gpu", "alice", "scaler"}
    for path in made.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(made.directory.stat().st_mode) == 0o700
    conf = made.auth_conf.read_text()
    users = json.loads(conf.split("authorization: ", 1)[1])["users"]
    assert sorted(u["nkey"] for u in users) == sorted(i.public_key for i in made.identities)
    assert all(b"SU" in made.seed_file(n).read_bytes()[:2] for n in names)


def test_a_client_finds_the_credential_up_left_for_its_url(tmp_path) -> None:
    settings = Settings(nats_credentials_dir=str(tmp_path / "creds"))
    url = "nats://127.0.0.1:41234"
    assert local_credential(settings, [url]) is None
    path = leave_client_credential(settings, url, b"SUSEED\n")
    assert local_credential(settings, ["nats://other:1", url]) == path
    assert credential_path(settings, url) == tmp_path / "creds" / "127.0.0.1_41234.nk"
    remove_credential(path)
    assert local_credential(settings, [url]) is None


async def test_check_reports_a_coordinator_whose_loops_stopped_moving(tmp_path: Path) -> None:
    settings = Settings(coordinator_id=f"stall-{os.getpid()}", coordinator_stall_s=5)
    path = heartbeat_path(settings)
    beat = Heartbeat(path)
    stopping = asyncio.Event()
    beat.turn("events")
    running = asyncio.create_task(beat.run(stopping))
    await asyncio.sleep(0.1)
    assert stall_problems(settings) == []

    beat._turns["events"] -= 60  # a consumer stuck on one message for a minute
    beat._write()
    assert "stuck on one message" in stall_problems(settings)[0]

    path.write_text(json.dumps({"pid": os.getpid(), "written_at": time.time() - 60,
                                "stuck_s": 0}))  # fmt: skip
    assert "wrote no heartbeat" in stall_problems(settings)[0]

    path.write_text(json.dumps({"pid": 2**22 + 1, "written_at": 0, "stuck_s": 0}))
    assert stall_problems(settings) == []  # left by a process that is gone
    stopping.set()
    await running
    assert not path.exists()
