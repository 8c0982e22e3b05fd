"""The planner learns from the store (issue "A planner that learns from history"): earlier
runs' outputs and added documents in its prompt, the providers' track records and flags,
and a post-run review that can fail a run. The scripted providers play every model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import PlannerOptions, RunRequest
from agentic.execution import run_to_completion
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import make_catalog, plan_step
from tests.integration.test_planner import planner_yaml

_register()
runner = CliRunner()

pytestmark = [pytest.mark.filterwarnings("ignore::ImportWarning")]

PLAN = {"steps": [plan_step("answer", "alpha")]}
ROUNDS = (
    {"steps": [plan_step("gather")]},
    {"done": True, "final_answer": "a first draft"},
    {"steps": [plan_step("dig")]},
    {"done": True, "final_answer": "a second draft"},
)
FILES = {
    "agent_providers/planner.yaml": planner_yaml("planner", PLAN),
    "agent_providers/rounds.yaml": planner_yaml("rounds", *ROUNDS),
    "agent_providers/oracle.yaml": """\
        id: oracle
        type: scripted
        role: Oracle
        goal: Know {topic}
        backstory: Knows things.
        script:
          replies: ["Quokkas thrive on Rottnest Island, an oracle says about {topic}."]
    """,
    "agent_providers/flaky.yaml": """\
        id: flaky
        type: scripted
        role: Flaky
        goal: Try {topic}
        backstory: Fails.
        script:
          replies: ["never"]
          fail: {times: 99, mode: fatal, message: "the flaky model fell over"}
    """,
    "agent_providers/critic.yaml": """\
        id: critic
        type: scripted
        role: Critic
        goal: Judge
        backstory: Strict.
        script:
          replies: ['{"score": 3, "reasons": ["too short", "no sources"]}']
    """,
    "agent_providers/fan.yaml": """\
        id: fan
        type: scripted
        role: Fan
        goal: Judge
        backstory: Kind.
        script:
          replies: ['{"score": 9, "reasons": ["clear"]}']
    """,
    "workflows/facts.yaml": """\
        workflow:
          name: facts
          topic: quokkas
          agent_providers: [oracle]
          tasks:
            - {id: find, agent_provider_id: oracle, description: "Find facts on {topic}",
               expected_output: facts}
    """,
    "workflows/shaky.yaml": """\
        workflow:
          name: shaky
          agent_providers: [flaky]
          tasks:
            - {id: try, agent_provider_id: flaky, description: Try, expected_output: x,
               retries: 0}
    """,
    "workflows/judged.yaml": """\
        workflow:
          name: judged
          topic: quokkas
          agent_providers: [oracle]
          review: {provider: critic, min_score: 7}
          tasks:
            - {id: find, agent_provider_id: oracle, description: "Find facts on {topic}",
               expected_output: facts}
    """,
}


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    config = make_catalog(tmp_path / "config", dict(FILES))
    store = tmp_path / "store"
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(config))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(store))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")
    return Settings(config_dir=str(config), run_store_url=str(store))


def run(settings: Settings, **fields: object):  # type: ignore[no-untyped-def]
    return run_to_completion(RunRequest(**fields), settings, lambda event: None)  # type: ignore[arg-type]


def planned_prompt(settings: Settings, goal: str, **options: object) -> dict:
    record = run(settings, goal=goal, planner=PlannerOptions(**options) if options else None)
    assert record.plan is not None
    return record.plan


def test_a_goal_on_the_topic_of_an_earlier_run_sees_its_output_with_its_run_id(
    settings: Settings,
) -> None:
    earlier = run(settings, workflow_ref="facts")
    assert earlier.status == "succeeded"

    plan = planned_prompt(settings, "Write a brief on quokkas and Rottnest Island")

    prompt = plan["prompt"]
    assert f"[run {earlier.run_id}]" in prompt
    assert "Quokkas thrive on Rottnest Island" in prompt
    assert f"run {earlier.run_id}" in plan["knowledge"]["sources"]
    # Opting out: the same goal without the knowledge base.
    bare = planned_prompt(settings, "Write a brief on quokkas and Rottnest Island", knowledge=False)
    assert "Rottnest" not in bare["prompt"].split("Goal:")[1].split("\n", 2)[2]
    assert "knowledge" not in bare


def test_a_private_run_stays_out_of_the_knowledge_base(settings: Settings) -> None:
    secret = run(settings, workflow_ref="facts", labels={"private": "yes"})
    assert secret.status == "succeeded"

    result = runner.invoke(app, ["kb", "search", "quokkas Rottnest", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == []


def test_an_added_document_is_found_by_kb_search_and_in_a_later_planner_prompt(
    settings: Settings, tmp_path: Path
) -> None:
    notes = tmp_path / "field-notes.md"
    notes.write_text("# Field notes\n\nThe zorblax migrates north every spring.\n")

    added = runner.invoke(app, ["kb", "add", str(notes)])
    assert added.exit_code == 0, added.output
    found = runner.invoke(app, ["kb", "search", "zorblax migration", "--json"])
    assert found.exit_code == 0, found.output
    (match,) = json.loads(found.output)
    assert match["source"] == "document field-notes.md" and "migrates north" in match["text"]

    plan = planned_prompt(settings, "Plan a zorblax watching trip")
    assert "[document field-notes.md]" in plan["prompt"]
    assert "The zorblax migrates north every spring." in plan["prompt"]

    listed = runner.invoke(app, ["kb", "list", "--json"])
    doc_id = json.loads(listed.output)["documents"][0]["doc_id"]
    removed = runner.invoke(app, ["kb", "rm", "field-notes.md"])
    assert removed.exit_code == 0 and doc_id in removed.output
    gone = runner.invoke(app, ["kb", "search", "zorblax", "--json"])
    # What is left is the goal's own run (its steps wrote about the zorblax), no document.
    assert [m["kind"] for m in json.loads(gone.output) if m["kind"] == "doc"] == []
    assert runner.invoke(app, ["kb", "rm", "field-notes.md"]).exit_code == 2


def test_a_provider_that_keeps_failing_is_flagged_in_stats_and_to_the_planner(
    settings: Settings,
) -> None:
    for _ in range(5):
        assert run(settings, workflow_ref="shaky").status == "failed"
    assert run(settings, workflow_ref="facts").status == "succeeded"

    stats = runner.invoke(app, ["stats", "--json"])
    assert stats.exit_code == 0, stats.output
    records = {r["provider"]: r for r in json.loads(stats.output)}
    assert records["flaky"]["attempts"] == 5 and records["flaky"]["success_rate"] == 0
    assert "the flaky model fell over" in records["flaky"]["last_failure"]
    assert records["oracle"]["success_rate"] == 1 and records["oracle"]["runs"] == 1
    table = runner.invoke(app, ["stats"], env={"COLUMNS": "250"})
    flaky_row = next(line for line in table.output.splitlines() if line.startswith("flaky"))
    assert "0% flagged" in flaky_row

    plan = planned_prompt(settings, "Try something")
    line = next(x for x in plan["prompt"].splitlines() if x.startswith("- flaky: 5 attempts"))
    assert "0% succeeded" in line and "FLAGGED" in line and "fell over" in line
    oracle = next(x for x in plan["prompt"].splitlines() if x.startswith("- oracle:"))
    assert "FLAGGED" not in oracle
    assert plan["knowledge"]["flagged"] == ["flaky"]


def test_a_review_below_min_score_fails_the_run_with_the_reviewers_reasons(
    settings: Settings,
) -> None:
    record = run(settings, workflow_ref="judged")

    assert record.status == "failed"
    assert record.error == (
        "the review scored step 'find' 3/10, below min_score 7: too short; no sources"
    )
    assert record.review == {
        "provider": "critic",
        "score": 3.0,
        "min_score": 7.0,
        "reasons": ["too short", "no sources"],
        "passed": False,
    }
    assert record.workflow is not None and record.workflow.task_sequence == ["find", "review"]
    shown = runner.invoke(app, ["show", record.run_id], env={"COLUMNS": "250"})
    assert "3/10 by critic (failed, min 7): too short; no sources" in shown.output

    # A kinder reviewer from the command line: the run passes and keeps the answer.
    passed = run(settings, workflow_ref="judged", review={"provider": "fan", "min_score": 7})
    assert passed.status == "succeeded", passed.error
    assert passed.output == "Quokkas thrive on Rottnest Island, an oracle says about quokkas."
    assert passed.review is not None and passed.review["score"] == 9.0
    stats = json.loads(runner.invoke(app, ["stats", "--json"]).output)
    oracle = next(r for r in stats if r["provider"] == "oracle")
    assert oracle["review_score"] == pytest.approx(6.0)  # the mean of 3 and 9


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page shows ``text`` (Helvetica), built by hand."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def test_a_pdf_is_added_by_its_text_and_other_files_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    paper = tmp_path / "paper.pdf"
    paper.write_bytes(minimal_pdf("Wombats dig burrows with their claws"))
    added = runner.invoke(app, ["kb", "add", str(paper)])
    assert added.exit_code == 0, added.output
    found = json.loads(runner.invoke(app, ["kb", "search", "wombats burrows", "--json"]).output)
    assert [m["source"] for m in found] == ["document paper.pdf"]
    assert "Wombats dig burrows" in found[0]["text"]

    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n")
    refused = runner.invoke(app, ["kb", "add", str(image)])
    assert refused.exit_code == 2
    assert "not a text, Markdown or PDF file" in refused.output
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"not a pdf at all")
    assert runner.invoke(app, ["kb", "add", str(broken)]).exit_code == 2


def iterative(settings: Settings, reviewer: str, min_score: float, rounds: int):  # type: ignore[no-untyped-def]
    request = RunRequest(
        goal="Describe quokkas",
        planner=PlannerOptions(iterative=True, max_rounds=rounds),
        review={"provider": reviewer, "min_score": min_score},
    )
    settings = settings.model_copy(update={"planner_agent_provider": "rounds"})
    return run_to_completion(request, settings, lambda event: None)


def test_an_iterative_answer_the_reviewer_fails_sends_the_planner_into_another_round(
    settings: Settings,
) -> None:
    record = iterative(settings, "critic", 5, rounds=3)

    assert record.status == "failed"
    assert record.error == (
        "the review scored step 'synthesis' 3/10, below min_score 5: too short; no sources"
    )
    assert record.plan is not None and record.plan["stopped"] == "review"
    reviews = record.plan["reviews"]
    assert [(r["round"], r["status"]) for r in reviews] == [(2, "failed"), (3, "failed")]
    # The round after the failed review was planned with the reviewer's reasons.
    third = record.plan["rounds"][2]["prompt"]
    assert "A reviewer scored the last final answer 3/10 (it needs 5)" in third
    assert "- too short" in third
    assert "A reviewer scored" not in record.plan["rounds"][1]["prompt"]


def test_an_iterative_answer_that_passes_its_review_is_the_runs_answer(
    settings: Settings,
) -> None:
    record = iterative(settings, "fan", 5, rounds=3)

    assert record.status == "succeeded", record.error
    assert record.review is not None and record.review["score"] == 9.0
    assert record.plan is not None
    assert [(r["round"], r["status"]) for r in record.plan["reviews"]] == [(2, "succeeded")]
    assert record.workflow is not None
    assert record.workflow.task_sequence == ["gather", "synthesis", "review"]
    store = open_store(settings.run_store_url)
    answer = store.read_result(record.run_id, "synthesis")
    assert answer is not None and record.output == answer.output
    # The review ran once, in its round; the goal's run took it over.
    review = store.read_result(record.run_id, "review")
    assert review is not None and review.reused_from == record.plan["reviews"][0]["run_id"]


def test_review_options_are_checked_before_anything_runs(settings: Settings) -> None:
    lone = runner.invoke(app, ["run", "facts", "--min-score", "5"])
    assert lone.exit_code == 2 and "add --review" in lone.output
    unknown = runner.invoke(app, ["run", "facts", "--review", "nobody"])
    assert unknown.exit_code == 2 and "unknown review provider 'nobody'" in unknown.output
    assert open_store(settings.run_store_url).list_run_ids() == []


@pytest.mark.procs
def test_on_an_s3_store_the_index_is_a_local_cache_rebuilt_from_the_store(
    s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentic.knowledge import add_document, index_path, open_index

    url = s3_server.unique_url()
    settings = Settings(run_store_url=url)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    store = open_store(url)
    notes = tmp_path / "s3-notes.md"
    notes.write_text("Numbats eat termites, thousands a day.")
    with open_index(settings, store) as index:
        add_document(store, index, notes)
    first = index_path(settings, store)
    assert first.is_relative_to(tmp_path / "cache-a")

    # Another machine (another cache) builds its index from the store alone.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    assert not index_path(settings, store).exists()
    with open_index(settings, open_store(url)) as elsewhere:
        (match,) = elsewhere.search("numbats termites")
    assert match.source == "document s3-notes.md"
