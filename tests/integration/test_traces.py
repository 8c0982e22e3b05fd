"""The trace of a ``nats`` run, as a collector receives it (docs/observability.md, "Traces").

A real stack (nats-server, a coordinator process, a worker process whose step processes
fork from its warm runtime) and ``agentic run --backend nats`` in a process of its own all
export to an OTLP/HTTP endpoint written for the test (:mod:`tests.otlp_sink`). The run has
two steps on the offline scripted provider, which makes real CrewAI model calls; the first
step's provider fails its first attempt with a message that echoes its API key, as a
gateway may, so the run has a retry.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from agentic.cli.process_stack import ProcessStack
from agentic.settings import Settings
from tests.factories import write_files
from tests.otlp_sink import OtlpSink, ReceivedSpan

pytestmark = [
    pytest.mark.procs,
    pytest.mark.nats,
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]

KEY_VAR = "TRACE_TEST_API_KEY"
SECRET = "sk-tr4ce-9f8e7d6c5b4a3210"
RUN_ID = "traced-run-1"
CATALOG = {
    "agent_providers/flaky.yaml": f"""\
id: flaky
type: scripted
role: Researcher
goal: Research {{topic}}
backstory: Careful.
model: scripted-notes
required_env: [{KEY_VAR}]
script:
  replies: ["Notes on {{topic}}."]
  fail: {{times: 1, mode: error, message: "the gateway refused key {SECRET}"}}
""",
    "agent_providers/steady.yaml": """\
id: steady
type: scripted
role: Writer
goal: Write about {topic}
backstory: Clear.
model: scripted-prose
script:
  replies: ["A paragraph on {topic}."]
""",
    "workflows/traced.yaml": """\
workflow:
  name: traced
  topic: tracing
  agent_providers: [flaky, steady]
  tasks:
    - {id: research, agent_provider_id: flaky, description: "Research {topic}.",
       expected_output: Notes.}
    - {id: write, agent_provider_id: steady, description: "Write about {topic}.",
       expected_output: A paragraph.}
  task_sequence: [research, write]
""",
}
# Attempts and the model calls each makes: a failed attempt fails before its model call,
# every other one answers with its one scripted reply.
ATTEMPTS = {("research", 1): 0, ("research", 2): 1, ("write", 1): 1}


def _expected_spans(spans: list[ReceivedSpan]) -> bool:
    names = Counter(s.name.split(" ")[0] for s in spans)
    return (
        names["run"] >= 1
        and names["dispatch"] >= len(ATTEMPTS)
        and names["step"] >= len(ATTEMPTS)
        and names["chat"] >= sum(ATTEMPTS.values())
    )


def test_one_trace_covers_a_nats_run_from_submit_through_every_attempt_to_every_model_call(
    tmp_path: Path,
) -> None:
    config = write_files(tmp_path / "config", CATALOG)
    store = tmp_path / "store"
    with OtlpSink() as sink:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENTIC_", "OTEL_"))}
        env.update(
            AGENTIC_RUN_STORE_URL=str(store),
            AGENTIC_CONFIG_DIR=str(config),
            AGENTIC_RETRY_BACKOFF_BASE_S="0.05",
            AGENTIC_RETRY_JITTER="0",
            CREWAI_DISABLE_TELEMETRY="true",
            OTEL_EXPORTER_OTLP_ENDPOINT=sink.endpoint,
            OTEL_SDK_DISABLED="false",  # tests/conftest.py turns it off for this process
            OTEL_BSP_SCHEDULE_DELAY="100",  # the services' spans leave within 0.1 s
            **{KEY_VAR: SECRET},
        )
        stack = ProcessStack(Settings(), workers=1, port=0, data_dir=tmp_path / "js", env=env)
        stack.start()
        try:
            command = ["run", "traced", "--backend", "nats", "--run-id", RUN_ID, "--json"]
            cli = subprocess.run(
                [sys.executable, "-m", "agentic", *command],
                env=stack.child_env("client"),
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stdout + cli.stderr
            spans = sink.wait_for(_expected_spans)
        finally:
            stack.stop()
        bodies = list(sink.bodies)
        assert not sink.refused

    ours = [s for s in spans if s.attributes.get("agentic.run_id") == RUN_ID]
    by_id = {s.span_id: s for s in spans}
    trace_ids = {s.trace_id for s in ours}
    assert len(trace_ids) == 1, trace_ids
    trace_id = trace_ids.pop()
    in_trace = [s for s in spans if s.trace_id == trace_id]

    # The submit: one root span, the CLI's, around the whole run.
    roots = [s for s in in_trace if not s.parent_span_id]
    assert [(r.name, r.service) for r in roots] == [("run traced", "agentic-cli")]
    root = roots[0]
    assert root.attributes["agentic.status"] == "succeeded"

    # Every attempt: dispatched by the coordinator under the root, run in a step process.
    attempts = {
        (s.attributes["agentic.step_id"], s.attributes["agentic.attempt"]): s
        for s in in_trace
        if s.name.startswith("step ")
    }
    assert set(attempts) == set(ATTEMPTS)
    for (step_id, attempt), span in attempts.items():
        dispatch = by_id[span.parent_span_id]
        assert dispatch.name == f"dispatch {step_id}"
        assert dispatch.service == "agentic-coordinator"
        assert dispatch.attributes["agentic.attempt"] == attempt
        assert dispatch.parent_span_id == root.span_id
        assert span.service == "agentic-step"
        assert span.attributes["agentic.run_id"] == RUN_ID
        assert span.attributes["agentic.provider"] == (
            "flaky" if step_id == "research" else "steady"
        )
        assert span.attributes["agentic.model"].startswith("scripted-")
        assert root.start_ns <= span.start_ns <= span.end_ns <= root.end_ns
    failed = attempts["research", 1]
    assert failed.status_code == 2 and failed.attributes["agentic.status"] == "failed"
    assert "the gateway refused key" in failed.status_message

    # Every model call: one span per scripted reply, under the attempt that made it.
    calls = Counter(
        (by_id[s.parent_span_id].attributes["agentic.step_id"],
         by_id[s.parent_span_id].attributes["agentic.attempt"])
        for s in in_trace
        if s.name.startswith("chat ")
    )  # fmt: skip
    assert calls == {key: n for key, n in ATTEMPTS.items() if n}
    for call in (s for s in in_trace if s.name.startswith("chat ")):
        provider = by_id[call.parent_span_id].attributes["agentic.provider"]
        assert call.attributes["gen_ai.request.model"] == f"scripted/{provider}"
        assert call.attributes["gen_ai.usage.output_tokens"] > 0

    # Across processes: the CLI, the coordinator and the step processes, each its own.
    services = {s.service for s in in_trace}
    assert {"agentic-cli", "agentic-coordinator", "agentic-step"} <= services
    assert len({s.resource["process.pid"] for s in in_trace}) >= 3

    # The key the provider's error echoed reached no collector.
    assert bodies and not any(SECRET.encode() in body for body in bodies)
