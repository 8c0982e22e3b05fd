"""agentic.tracing: nothing without an endpoint, strict parsing of outside contexts, what
travels to Jobs, and spans exported to a real OTLP/HTTP endpoint (a thread, no process)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from agentic import redact, tracing
from agentic.contracts import RunRecord, RunRequest
from agentic.k8s.jobs import step_job_manifest, worker_job_manifest
from agentic.settings import get_settings
from agentic.tracing import TraceParent
from tests.factories import step_spec
from tests.otlp_sink import OtlpSink

VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
EXPORTER_THREAD = "OtelBatch"


def _exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(EXPORTER_THREAD)]


@pytest.fixture
def no_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*tracing.ENDPOINT_VARS, "OTEL_SDK_DISABLED", tracing.ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpSink]:
    """This process exports to a sink for the test; its provider is shut down after."""
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    with OtlpSink() as sink:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", sink.endpoint)
        monkeypatch.setattr(tracing, "_state", tracing._State())
        tracing.configure("agentic-test")
        try:
            yield sink
        finally:
            provider = tracing._state.provider
            if provider is not None:
                provider.shutdown()


def test_without_an_endpoint_nothing_is_recorded_and_no_exporter_thread_starts(
    no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracing, "_state", tracing._State())
    before = _exporter_threads()
    assert tracing.configure(tracing.CLI) is False
    with tracing.span("run x", attributes={"agentic.run_id": "r"}) as span:
        assert span is None
        assert tracing.current() is None
        assert tracing.inject({}) == {}
        assert tracing.root("run x") is None
    tracing.flush()
    assert tracing._state.provider is None
    assert _exporter_threads() == before


def test_without_an_endpoint_a_received_context_is_still_passed_on(no_endpoint: None) -> None:
    parent = TraceParent.parse(VALID)
    with tracing.span("dispatch s", parent=parent) as span:
        assert span is None
        assert tracing.inject({}) == {"traceparent": VALID}
        assert tracing.env_carrier() == {"TRACEPARENT": VALID}
    assert tracing.current() is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        VALID.upper(),  # W3C: lowercase hex only
        "01" + VALID[2:],  # a version this parser does not know
        "ff" + VALID[2:],
        VALID + "-extra",
        VALID[:-1],
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # an all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
        " " + VALID[:-1],
        VALID.replace("-", "_"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\n",
    ],
)
def test_a_traceparent_from_outside_is_taken_only_in_its_exact_w3c_form(value: object) -> None:
    assert TraceParent.parse(value) is None
    assert tracing.from_headers({"traceparent": value} if isinstance(value, str) else {}) is None


def test_a_valid_traceparent_round_trips() -> None:
    parent = TraceParent.parse(VALID)
    assert parent is not None and parent.sampled and str(parent) == VALID
    assert tracing.from_env({"TRACEPARENT": VALID}) == parent


def test_a_run_record_refuses_a_malformed_traceparent() -> None:
    request = RunRequest(workflow_ref="w")
    RunRecord(run_id="r1", request=request, backend="nats", traceparent=VALID)
    with pytest.raises(ValueError):
        RunRecord(run_id="r1", request=request, backend="nats", traceparent="00-x-y-01")


def test_jobs_get_the_endpoint_and_the_context_but_never_exporter_headers(
    no_endpoint: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.observability:4318",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://user:hunter2@collector.example/v1/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=sk-collector-secret",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "authorization=Bearer sk-collector-secret",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTHER": "x",
    }
    with tracing.carried(TraceParent.parse(VALID)):
        forwarded = tracing.job_env(env)
    assert forwarded == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.observability:4318",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "TRACEPARENT": VALID,
    }
    conf = get_settings(
        k8s_store_pvc="agentic-store",
        k8s_secret_name="agentic-secrets",
        nats_url="nats://nats:4222",
        run_store_url="/var/lib/agentic/store",
    )
    spec = step_spec(store_url="/var/lib/agentic/store")
    manifest = step_job_manifest(
        spec, conf, spec_url="/var/lib/agentic/store/s.json", trace_env=forwarded
    )
    step_env = {
        e["name"]: e.get("value")
        for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert step_env["TRACEPARENT"] == VALID
    assert step_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector.observability:4318"
    assert "sk-collector-secret" not in str(manifest) and "hunter2" not in str(manifest)
    worker = worker_job_manifest(
        "default", conf, name="agentic-worker-x", trace_env=tracing.job_env(env)
    )
    worker_env = {e["name"] for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in worker_env
    assert "sk-collector-secret" not in str(worker)


def test_spans_reach_the_endpoint_in_one_trace_with_errors_masked(
    exported: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNIT_TRACE_API_KEY", "sk-unit-trace-0123456789")
    redact.protect_environment()
    with tracing.span("run w", attributes={"agentic.run_id": "r1"}) as root:
        assert root is not None
        assert _exporter_threads()  # made on the first span, not before
        traceparent = tracing.root("ignored: a context is current")
        with tracing.span("step s", kind="consumer") as step:
            tracing.failed(step, "ScriptedError", "refused key sk-unit-trace-0123456789")
    assert traceparent == str(tracing.of(root))
    tracing.flush()
    spans = exported.wait_for(lambda found: len(found) >= 2, timeout=5)
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"run w", "step s"}
    assert by_name["step s"].trace_id == by_name["run w"].trace_id
    assert by_name["step s"].parent_span_id == by_name["run w"].span_id
    assert by_name["run w"].service == "agentic-test"
    assert by_name["step s"].status_code == 2
    assert by_name["step s"].attributes["error.type"] == "ScriptedError"
    assert "sk-unit-trace" not in by_name["step s"].status_message
    assert not any(b"sk-unit-trace" in body for body in exported.bodies)


def test_a_span_continues_a_trace_received_from_outside(exported: OtlpSink) -> None:
    with tracing.span("step s", parent=TraceParent.parse(VALID)):
        pass
    tracing.flush()
    (span,) = exported.wait_for(lambda found: len(found) >= 1, timeout=5)
    assert (span.trace_id, span.parent_span_id) == (VALID[3:35], VALID[36:52])


def test_a_failed_model_call_is_a_span_under_its_attempt_with_its_error_masked(
    exported: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.types.llm_events import LLMCallFailedEvent, LLMCallStartedEvent

    from agentic.runtime import spans

    monkeypatch.setenv("UNIT_GATEWAY_TOKEN", "tok-unit-gateway-0123456789")
    redact.protect_environment()
    spans.install()
    with tracing.span("step s") as step:
        crewai_event_bus.emit(None, LLMCallStartedEvent(model="m-1", call_id="c1", messages=[]))
        error = "401 from the gateway: token tok-unit-gateway-0123456789 refused"
        crewai_event_bus.emit(None, LLMCallFailedEvent(model="m-1", call_id="c1", error=error))
    spans.settle()
    found = exported.wait_for(lambda got: len(got) >= 2, timeout=5)
    chat = next(s for s in found if s.name == "chat m-1")
    assert chat.parent_span_id == tracing.of(step).span_id
    assert chat.status_code == 2 and chat.attributes["error.type"] == "LLMCallFailed"
    assert "401 from the gateway" in chat.status_message
    assert not any(b"tok-unit-gateway" in body for body in exported.bodies)


def test_a_call_whose_end_is_handled_before_its_start_still_makes_one_span(
    exported: OtlpSink,
) -> None:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from agentic.runtime.spans import _Listener

    listener = _Listener()
    at = datetime(2026, 12, 7, tzinfo=UTC)
    started = SimpleNamespace(event_id="e1", timestamp=at, tool_name="word_count", task_id=None)
    finished = SimpleNamespace(
        started_event_id="e1", timestamp=at + timedelta(seconds=2), from_cache=False, failure=None
    )
    with tracing.span("step s"):
        listener._tool_finished(None, finished)  # CrewAI's pool ran the end first
        listener._tool_started(None, started)
    tracing.flush()
    found = exported.wait_for(lambda got: len(got) >= 2, timeout=5)
    (tool,) = [s for s in found if s.name == "execute_tool word_count"]
    assert tool.end_ns - tool.start_ns == 2_000_000_000
    assert tool.attributes["gen_ai.tool.name"] == "word_count"


async def test_a_restored_run_dispatches_its_steps_in_the_trace_its_run_json_names(
    no_endpoint: None,
) -> None:
    from agentic.contracts import AgentProvider, ScriptedScript, TaskConfig, WorkflowConfig
    from agentic.materialize import SpecFactory
    from agentic.store import open_store
    from services.coordinator.memory import memory_deps
    from services.coordinator.runs import RunDriver

    provider = AgentProvider(
        id="a", type="scripted", role="r", goal="g", backstory="b", script=ScriptedScript()
    )
    task = TaskConfig(id="s", agent_provider_id="a", description="d", expected_output="o")
    wf = WorkflowConfig(name="w", agent_providers=[provider], tasks=[task], task_sequence=["s"])
    store = open_store("memory://tracing-restore")
    settings = get_settings()
    deps, bus = memory_deps(settings, store)
    request = RunRequest(workflow=wf)
    record = RunRecord(
        run_id="r-t", request=request, workflow=wf, backend="nats", status="running",
        traceparent=VALID,
    )  # fmt: skip
    store.create_run(record)
    carried: list[str | None] = []
    queue = bus.queue

    def queued(spec: object) -> int:
        parent = tracing.current()
        carried.append(str(parent) if parent else None)  # what publish_step would send
        return queue(spec)  # type: ignore[arg-type]

    bus.queue = queued  # type: ignore[method-assign]
    stored = store.read_run("r-t")  # what a restarted coordinator knows: run.json
    specs = SpecFactory(wf, run_id="r-t", inputs={}, store_url=store.url, settings=settings)
    driver = RunDriver(stored, specs, deps)
    await driver.resume({}, {})
    driver.close()
    assert carried == [VALID]


def test_an_inprocess_crew_gives_each_task_a_span_with_its_model_call_under_it(
    exported: OtlpSink,
) -> None:
    from agentic import runtime

    runtime.setup()
    from agentic.runtime.crew import run_workflow_inprocess
    from tests.factories import two_steps

    with tracing.span("run two-steps") as root:
        run_workflow_inprocess(two_steps(), run_id="r-in", inputs={}, on_step=lambda r: None)
    tracing.flush()
    found = exported.wait_for(lambda got: len(got) >= 5, timeout=5)
    steps = {s.attributes["agentic.step_id"]: s for s in found if s.name.startswith("step ")}
    assert set(steps) == {"research", "write"}
    for step in steps.values():
        assert step.parent_span_id == tracing.of(root).span_id
        assert step.attributes["agentic.run_id"] == "r-in"
        assert step.attributes["agentic.attempt"] == 1
        assert step.attributes["agentic.status"] == "succeeded"
    chats = [s for s in found if s.name.startswith("chat ")]
    assert sorted(by.attributes["agentic.step_id"] for by in (
        steps_by_id for c in chats for steps_by_id in steps.values()
        if steps_by_id.span_id == c.parent_span_id
    )) == ["research", "write"]  # fmt: skip
