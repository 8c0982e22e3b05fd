"""The original tool's catalogs load in agentic and mean what they meant (docs/compatibility.md).

``tests/fixtures/origin_catalogs`` is a catalog written in that tool's format; the edge cases
(a typo, a bad ``process``, aliases given twice) are YAML files written to ``tmp_path``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

from agentic.catalog import (
    KindDir,
    catalog_dirs,
    load_catalog,
    load_workflow,
    require_env,
    scan_catalog,
)
from agentic.catalog.env import is_available, missing_env
from agentic.errors import MissingEnvError
from agentic.planning.hardware import fitting, parse_memory_total
from agentic.planning.prompt import offer_for, render_prompt
from agentic.settings import get_settings
from tests.factories import (
    ORIGIN_CATALOG,
    SCRIPTED_AGENT,
    agent,
    make_catalog,
    problems_of,
    task_yaml,
    workflow_yaml,
)

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from agentic.runtime.agents import build_agent
    from agentic.runtime.llm import build_llm, llm_arguments

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

CREDENTIALS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN", "HUGGINGFACE_API_KEY")


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch):
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def origin():
    return load_catalog([ORIGIN_CATALOG], env={})


def _warned(root: Path) -> set[tuple[str, str | None]]:
    return {(Path(w.file).name, w.field) for w in scan_catalog([root]).warnings}


def test_the_original_catalogs_load_with_one_warning_per_ignored_field_and_no_problem():
    report = scan_catalog([ORIGIN_CATALOG])

    assert report.problems == []
    assert report.catalog.summary() == "11 agent providers, 2 MCP providers, 2 workflows"
    assert {(Path(w.file).name, w.field) for w in report.warnings} == {
        ("client_helper.yaml", "mcp_providers"),
        ("client_helper.yaml", "skills"),
        ("gpt_research.yaml", "society_capable"),
        ("gpt_research.yaml", "harness_profile"),
        ("ollama_small_generalist.yaml", "selfcontained"),
        ("ollama_small_generalist.yaml", "general_purpose"),
        ("ollama_small_generalist.yaml", "ollama_host"),
        ("rules_checker.yaml", "provider_class"),
        ("rules_checker.yaml", "provider_options"),
        ("rules_checker.yaml", "entrypoint"),
        ("rules_checker.yaml", "type"),
        ("docs_search.yaml", "match_keywords_only"),
        ("offline_brief.yaml", "workflow.providers[1].general_purpose"),
        ("two_step.yaml", "workflow.skills"),
        ("two_step.yaml", "workflow.rag_sources"),
        ("two_step.yaml", "workflow.providers[1].selfcontained"),
        ("two_step.yaml", "workflow.tasks[0].rag_query"),
        ("two_step.yaml", "workflow.tasks[1].skills"),
        ("two_step.yaml", "workflow.tasks[1].rag_sources"),
    }
    assert all("accepted and has no effect" in w.message for w in report.warnings)


def test_loading_logs_each_warning_on_one_line_naming_file_and_field(caplog):
    load_catalog([ORIGIN_CATALOG], env={})

    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(
        line.endswith(
            "agent_providers/ollama_small_generalist.yaml: selfcontained: accepted and has no "
            "effect: agentic does not install, serve or pull Ollama models"
        )
        for line in lines
    ), lines
    assert all("\n" not in line for line in lines)


def test_the_legacy_keys_providers_and_provider_id_are_agent_providers(origin):
    wf = load_workflow("two_step", origin, check_env=False)

    assert [p.id for p in wf.agent_providers] == ["researcher", "writer"]
    assert [t.agent_provider_id for t in wf.tasks] == ["researcher", "writer"]
    assert wf.task_sequence == ["research", "write"]
    assert wf.task("write").mcp_providers == []  # `[]` still means none


def test_an_mcp_provider_keeps_what_the_planner_reads(origin):
    search = origin.mcp_providers["docs_search"]

    assert search.user_goal_keywords == ["docs", "documentation", "manual"]
    assert search.capabilities == "Full-text search of product manuals and release notes."
    assert origin.mcp_providers["fetch_url"].transport == "stdio"
    assert search.transport == "streamable_http"


def test_the_planner_prompt_shows_hints_capabilities_good_for_and_keywords(origin):
    env = {"DOCS_SEARCH_TOKEN": "t", "AGENTIC_MCP_FETCH_ENABLED": "1", "OPENAI_API_KEY": "k"}
    offer = offer_for(origin, backend="inprocess", env=env)
    prompt = render_prompt("What changed in the manual?", offer)

    assert (
        "- docs_search: Hosted search over vendor documentation. Hint: Use when the goal needs "
        "current documentation. Capabilities: Full-text search of product manuals and release "
        "notes. Good for: Current answers about product versions, configuration options and "
        "known issues. Goal keywords: docs, documentation, manual."
    ) in prompt
    assert "Capabilities: fetch a URL; strip the HTML" in prompt
    assert "Good for: fact finding; comparisons" in prompt  # an agent's good_for


def test_agents_are_gated_by_type_when_they_name_no_variable(origin):
    offered = set(origin.available_agent_providers(env={}))

    assert offered == {
        "ollama_small_generalist",
        "ollama_gpu_box",
        "gpt_local_server",  # an OpenAI-compatible server of its own: no key
        "client_helper",  # idem
        "vllm_tpu",
        "scripted_analyst",
    }  # not rules_checker: agentic has no 'deterministic' agents
    hf = origin.agent_providers["hf_llama"]
    assert missing_env(hf, {}) == ([], ["HF_TOKEN", "HUGGINGFACE_API_KEY"])
    assert is_available(hf, {"HUGGINGFACE_API_KEY": "hf_x"})
    with pytest.raises(MissingEnvError, match="'claude_writer' needs ANTHROPIC_API_KEY set"):
        require_env(origin.agent_providers["claude_writer"], {})
    assert is_available(origin.agent_providers["gpt_research"], {"OPENAI_API_KEY": "sk"})


def test_a_required_env_replaces_the_gating_by_type():
    own = agent("gpt", type="openai", model="m", required_env=["TEAM_OPENAI_KEY"])

    assert is_available(own, {"TEAM_OPENAI_KEY": "k"})
    assert not is_available(agent("gpt", type="openai", model="m"), {"TEAM_OPENAI_KEY": "k"})


def test_exec_fallback_provider_is_a_fallback_chain(origin):
    assert origin.agent_providers["claude_writer"].fallback == ["gpt_research"]
    assert origin.agent_providers["hf_llama"].fallback == ["ollama_small_generalist"]


def test_ollama_gets_num_ctx_through_its_native_api_and_its_host_url(origin):
    args = llm_arguments(origin.agent_providers["ollama_gpu_box"], {})

    assert args == {
        "model": "ollama_chat/qwen2.5:14b",
        "is_litellm": True,
        "num_ctx": 32768,
        "base_url": "http://gpu-box.lan:11434",
    }


def test_ollama_host_workflow_falls_back_to_ollama_host_from_the_environment(origin):
    small = origin.agent_providers["ollama_small_generalist"]

    assert small.ollama_host is None
    assert llm_arguments(small, {"OLLAMA_HOST": "http://here:11434"})["base_url"] == (
        "http://here:11434"
    )


def test_huggingface_base_url_is_the_endpoint(origin):
    args = llm_arguments(origin.agent_providers["hf_endpoint"], {})

    assert (args["model"], args["base_url"]) == ("openai/tgi", "https://endpoint.example/v1")


def test_the_crewai_agent_gets_verbose_and_allow_delegation(origin):
    provider = origin.agent_providers["scripted_analyst"]
    llm = build_llm(provider, step_id="gather", topic="t", env={})

    built = build_agent(provider, llm=llm)

    assert (built.verbose, built.allow_delegation) == (True, True)
    quiet = build_agent(origin.workflows["offline_brief"].workflow.agent_providers[1], llm=llm)
    assert (quiet.verbose, quiet.allow_delegation) == (False, False)


def test_num_ctx_on_another_type_is_a_warning(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha") + "num_ctx: 4096\n"
    root = make_catalog(tmp_path, {"agent_providers/alpha.yaml": text})

    assert problems_of(root) == []
    assert ("alpha.yaml", "num_ctx") in _warned(root)


def test_process_is_sequential_or_hierarchical_with_a_manager(tmp_path):
    tasks = task_yaml("one") + task_yaml("two", "beta")
    root = make_catalog(tmp_path)
    manager = "manager_provider: alpha"
    for process, expected in (
        ("sequential", []),
        (f"hierarchical\n  {manager}", []),
        ("hierarchical", [("workflow.manager_provider", "required when process is hierarchical")]),
        (f"sequential\n  {manager}", [("workflow.manager_provider", "only a hierarchical crew")]),
        ("parallel", [("workflow.process", "must be one of sequential, hierarchical")]),
    ):
        flow = workflow_yaml(tasks, extra=f"  process: {process}\n")
        make_catalog(root, {"workflows/flow.yaml": flow})
        found = [(p.field, p.message) for p in problems_of(root)]
        assert [f for f, _ in found] == [f for f, _ in expected], found
        assert all(e in m for (_, e), (_, m) in zip(expected, found, strict=True)), found


@pytest.mark.parametrize(
    ("where", "text", "field", "meant"),
    [
        (
            "agent_providers/alpha.yaml",
            "alow_delegation: true\n",
            "alow_delegation",
            "allow_delegation",
        ),
        ("mcp_providers/tools.yaml", "planer_hint: x\n", "planer_hint", "planner_hint"),
        (
            "workflows/flow.yaml",
            "  task_sequense: [one]\n",
            "workflow.task_sequense",
            "task_sequence",
        ),
    ],
)
def test_a_typo_in_our_own_fields_is_an_error_with_did_you_mean(
    tmp_path, where, text, field, meant
):
    base = {
        "agent_providers/alpha.yaml": SCRIPTED_AGENT.format(id="alpha"),
        "mcp_providers/tools.yaml": "id: tools\nstdio: {command: python}\n",
        "workflows/flow.yaml": workflow_yaml(task_yaml("one")),
    }
    root = make_catalog(tmp_path, {where: base[where] + text})
    [problem] = problems_of(root)

    assert (problem.field, problem.message) == (field, f"unknown field (did you mean {meant!r}?)")


def test_validate_prints_the_warnings_and_exits_0():
    from typer.testing import CliRunner

    from agentic.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["validate", str(ORIGIN_CATALOG)])

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "11 agent providers, 2 MCP providers, 2 workflows: OK"
    assert (
        "origin_catalogs/workflows/two_step.yaml: warning: workflow.tasks[0].rag_query: "
        "accepted and has no effect: agentic has no RAG sources catalog\n"
    ) in result.stderr
    assert result.stderr.endswith("19 warnings\n")


def test_a_typo_in_a_task_and_in_a_legacy_list_names_the_field_as_written(tmp_path):
    flow = (
        "workflow:\n  name: flow\n  providers: [alpha]\n  tasks:\n"
        "    - {id: one, provider_id: alpha, description: d, expected_output: e, retires: 2}\n"
        "  task_sequence: [one]\n"
    )
    root = make_catalog(tmp_path, {"workflows/flow.yaml": flow})

    [problem] = problems_of(root)
    assert (problem.field, problem.message) == (
        "workflow.tasks[0].retires",
        "unknown field (did you mean 'retries'?)",
    )


def test_a_legacy_key_and_ours_together_are_refused(tmp_path):
    flow = workflow_yaml(task_yaml("one"), extra="  providers: [alpha]\n")
    root = make_catalog(tmp_path, {"workflows/flow.yaml": flow})

    [problem] = problems_of(root)
    assert (problem.field, problem.message) == (
        "workflow.providers",
        "give either 'providers' or 'agent_providers', not both",
    )


def test_the_original_path_variables_are_read(tmp_path, monkeypatch):
    root = make_catalog(tmp_path / "root")
    extra_agents, extra_mcps = tmp_path / "overlay_agents", tmp_path / "overlay_mcps"
    extra_agents.mkdir()
    extra_mcps.mkdir()
    (extra_agents / "gamma.yaml").write_text(SCRIPTED_AGENT.format(id="gamma"))
    (extra_mcps / "docs.yaml").write_text("id: docs\nstreamable_http: {url: 'http://d/mcp'}\n")
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(root))
    monkeypatch.setenv(
        "AGENTIC_EXTRA_AGENT_PROVIDERS_CATALOG_DIRS",
        os.pathsep.join([str(extra_agents), str(tmp_path / "root" / "agent_providers")]),
    )
    monkeypatch.setenv("AGENTIC_EXTRA_MCP_PROVIDERS_PATH", str(extra_mcps))
    monkeypatch.setenv("AGENTIC_RUN_STORE_PATH", str(tmp_path / "store"))
    settings = get_settings()

    assert settings.run_store_url == str(tmp_path / "store")
    assert catalog_dirs(settings) == [
        str(root),
        KindDir(str(extra_agents), "agent_providers"),
        KindDir(str(root / "agent_providers"), "agent_providers"),
        KindDir(str(extra_mcps), "mcp_providers"),
    ]
    catalog = load_catalog(catalog_dirs(settings), env={})
    assert set(catalog.agent_providers) == {"alpha", "beta", "gamma"}
    assert set(catalog.mcp_providers) == {"tools", "docs"}
    assert catalog.source_of("mcp_providers", "docs") == str(extra_mcps / "docs.yaml")


def test_agentic_run_store_url_wins_over_the_original_name(monkeypatch):
    monkeypatch.setenv("AGENTIC_RUN_STORE_PATH", "/old")
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", "memory://new")

    assert get_settings().run_store_url == "memory://new"
    assert get_settings(run_store_url="/given").run_store_url == "/given"


def test_an_original_workflow_runs_offline_in_process(origin, tmp_path):
    from tests.parity import run_and_collect

    wf = load_workflow("offline_brief", origin)

    outputs = run_and_collect("inprocess", wf, {"topic": "tide pools"}, str(tmp_path / "store"))

    assert outputs == {
        "gather": "facts about tide pools from gather",
        "brief": "brief on tide pools by brief",
    }


def test_agents_needing_more_vram_than_declared_are_not_offered_when_steps_run_here(origin):
    env = {"OPENAI_API_KEY": "k"}
    small_gpu = get_settings(assume_vram_gb=8)

    here = offer_for(origin, backend="inprocess", env=env, settings=small_gpu)
    workers = offer_for(origin, backend="nats", env=env, settings=small_gpu)

    assert "ollama_small_generalist" in here.agents  # min_vram_gb 4
    assert "ollama_gpu_box" not in here.agents  # min_vram_gb 16
    assert "gpt_research" in here.agents  # min_vram_gb 0
    assert "ollama_gpu_box" in workers.agents  # a scheduling hint on workers


def test_the_vram_is_detected_when_not_declared_and_unknown_vram_hides_nothing(origin):
    agents = origin.available_agent_providers(env={})
    settings = get_settings(assume_vram_gb=None)

    detected = fitting(agents, settings, backend="subprocess", detect=lambda: 6.0)
    unknown = fitting(agents, settings, backend="subprocess", detect=lambda: None)

    assert "ollama_gpu_box" not in detected and "ollama_small_generalist" in detected
    # Unknown VRAM hides nothing by min_vram_gb; without a GPU found, a gpu-only or a
    # tpu-only model still cannot run here.
    assert set(agents) - set(unknown) == {"ollama_gpu_box", "vllm_tpu"}
    assert parse_memory_total("24576\n8192\n") == 24.0
    assert parse_memory_total("[N/A]\n") is None


def test_architectures_declared_hide_the_agents_this_machine_cannot_run(origin):
    agents = origin.available_agent_providers(env={"OPENAI_API_KEY": "k"})
    cpu_only = get_settings(assume_vram_gb=0, available_architectures=None)
    tpu_box = get_settings(assume_vram_gb=0, available_architectures="cpu,tpu")
    off = get_settings(assume_vram_gb=0, disable_hardware_filter=True)

    on_cpu = fitting(agents, cpu_only, backend="inprocess")
    on_tpu = fitting(agents, tpu_box, backend="subprocess")

    assert set(agents) - set(on_cpu) == {"ollama_gpu_box", "vllm_tpu"}  # [gpu], [tpu]
    assert "ollama_small_generalist" in on_cpu  # [cpu, gpu]: either will do
    assert set(agents) - set(on_tpu) == {"ollama_gpu_box"}
    assert fitting(agents, off, backend="inprocess") == agents
    assert fitting(agents, cpu_only, backend="kubernetes") == agents  # a worker's business
    with pytest.raises(ValueError, match="architecture"):
        agent("a", type="openai", model="m", hardware={"architecture": ["quantum"]})
    assert agent(
        "a", type="openai", model="m", hardware={"architecture": "CPU, gpu"}
    ).hardware.architecture == [
        "cpu",
        "gpu",
    ]


def test_hardware_min_vram_gb_is_min_vram_gb(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha") + "hardware: {architecture: [gpu], min_vram_gb: 12}\n"
    root = make_catalog(tmp_path, {"agent_providers/alpha.yaml": text})

    provider = load_catalog([root], env={}).agent_providers["alpha"]

    assert (provider.min_vram_gb, provider.hardware.architecture) == (12, ["gpu"])
    both = text + "min_vram_gb: 4\n"
    make_catalog(root, {"agent_providers/alpha.yaml": both})
    [problem] = problems_of(root)
    assert problem.field == "hardware.min_vram_gb"
    assert "not both" in problem.message


@pytest.mark.parametrize(
    ("kind", "field", "message"),
    [
        (
            "opneai",
            "type",
            "unknown type 'opneai' (types: anthropic, huggingface, litellm, "
            "ollama, openai, scripted, vllm); did you mean 'openai'?",
        ),
        (
            "gpt",
            "type",
            "unknown type 'gpt' (types: anthropic, huggingface, litellm, "
            "ollama, openai, scripted, vllm)",
        ),
    ],
)
def test_an_agent_type_agentic_cannot_run_is_an_error_naming_the_types(
    tmp_path, kind, field, message
):
    text = f"id: alpha\ntype: {kind}\nmodel: m\nrole: r\ngoal: g\nbackstory: b\n"
    root = make_catalog(tmp_path, {"agent_providers/alpha.yaml": text})
    [problem] = problems_of(root)

    assert (Path(problem.file).name, problem.field, problem.message) == (
        "alpha.yaml",
        field,
        message,
    )


def _mcp(root: Path, body: str) -> list[tuple[str | None, str]]:
    make_catalog(root, {"mcp_providers/tools.yaml": "id: tools\n" + body})
    return [(p.field, p.message) for p in problems_of(root)]


def test_mcp_refs_are_one_streamable_http_server_and_its_tools(tmp_path):
    root = make_catalog(tmp_path)

    assert _mcp(root, "ref: https://mcp.example/mcp?k=${KEY}\n") == []
    plain = load_catalog([root], env={}).mcp_providers["tools"]
    assert (plain.streamable_http.url, plain.tools) == ("https://mcp.example/mcp?k=${KEY}", None)

    refs = "refs: ['https://mcp.example/mcp#search', 'https://mcp.example/mcp#fetch']\n"
    assert _mcp(root, refs) == []
    picked = load_catalog([root], env={}).mcp_providers["tools"]
    assert (picked.streamable_http.url, picked.tools) == (
        "https://mcp.example/mcp",
        ["search", "fetch"],
    )


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ("ref: notion#search\n", "ref", "CrewAI AMP reference"),
        ("ref: 'crewai-amp:notion'\n", "ref", "CrewAI AMP reference"),
        ("refs: [https://a.example/mcp, https://b.example/mcp]\n", "refs", "names 2 servers"),
        ("refs: []\n", "refs", "names no server"),
        ("refs: https://a.example/mcp\n", "refs", "must be a list"),
        ("ref: https://a.example/mcp\nstdio: {command: x}\n", "ref", "give either"),
    ],
)
def test_mcp_refs_agentic_cannot_serve_are_errors(tmp_path, body, field, says):
    [(where, message)] = _mcp(make_catalog(tmp_path), body)

    assert where == field
    assert says in message


def test_an_inline_mcp_ref_in_a_workflow_is_its_server(tmp_path):
    inline = "  mcp_providers: [{id: docs, ref: 'https://docs.example/mcp#lookup'}]\n"
    flow = workflow_yaml(task_yaml("one"), extra="").replace("  mcp_providers: [tools]\n", inline)
    root = make_catalog(tmp_path, {"workflows/flow.yaml": flow})

    assert problems_of(root) == []
    wf = load_workflow("flow", load_catalog([root], env={}), check_env=False)
    assert [(m.id, m.streamable_http.url, m.tools) for m in wf.mcp_providers] == [
        ("docs", "https://docs.example/mcp", ["lookup"])
    ]
