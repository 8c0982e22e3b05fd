"""The web console in headless Chromium against a real `agentic up` (nats-server, a
coordinator, a worker and the console it serves), as an operator uses it: start a
`parallel_demo` run on `nats` and watch its graph go all-succeeded without a reload, read a
step's output, cancel a run, replay from a step with a `--set`, and hold a conversation of
two goals in one session.

One stack and one browser for the module. Debian's chromium (``/usr/bin/chromium``,
installed by ``.ci/run``) is driven by the ``playwright`` package; nothing is downloaded.
``AGENTIC_CONSOLE_SCREENSHOTS=DIR`` copies the runs page and run page screenshots there
(docs/console-runs.png and docs/console-run.png were made so).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agentic.cli.process_stack import free_port
from agentic.store import RunStore, open_store
from tests.factories import write_files
from tests.integration.nats_stack import start_agentic_up

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_S = 60_000  # ms: a run on the stack
SLEEPER = """\
id: sleeper
type: scripted
role: Sleeper
goal: Wait
backstory: Waits for a long time.
script:
  delay_s: 120
  replies: ["done waiting"]
"""
SLOW = """\
workflow:
  name: slow_demo
  topic: waiting
  agent_providers: [sleeper]
  tasks:
    - id: wait
      agent_provider_id: sleeper
      description: Wait for {topic}.
      expected_output: Nothing.
  task_sequence: [wait]
"""

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # .ci/run installs it: in CI a missing browser is a failure
        pytest.fail(f"{CHROMIUM} is missing: .ci/run should have installed chromium", False)
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api")


@dataclass
class Stack:
    url: str
    token: str
    store: RunStore
    shots: Path
    demo_run: str | None = None  # a succeeded parallel_demo run, once a test made one


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("console")
    extra = write_files(
        root / "extra",
        {"agent_providers/sleeper.yaml": SLEEPER, "workflows/slow_demo.yaml": SLOW},
    )
    keep = {"AGENTIC_NATS_CREDENTIALS_DIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_") or k in keep}
    env.update(
        CREWAI_DISABLE_TELEMETRY="true",
        AGENTIC_RUN_STORE_URL=str(root / "store"),
        AGENTIC_CONFIG_DIR=str(REPO / "config"),
        AGENTIC_EXTRA_CONFIG_DIRS=f'["{extra}"]',
    )
    port = free_port()
    up, announced = start_agentic_up(
        root / "js", env, root, "--workers", "1", "--concurrency", "3", "--console-port", str(port)
    )
    found = re.search(r"Console: (http://127\.0\.0\.1:(\d+)/)\?token=(\S+)", announced)
    try:
        assert found is not None, announced
        assert found.group(2) == str(port)
        (root / "shots").mkdir()
        yield Stack(found.group(1), found.group(3), open_store(str(root / "store")), root / "shots")
    finally:
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
    shots = os.environ.get("AGENTIC_CONSOLE_SCREENSHOTS")
    if shots:
        for png in (root / "shots").glob("*.png"):
            shutil.copy(png, Path(shots) / png.name)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{stack.url}?token={stack.token}")  # the URL `agentic up` printed: a cookie
    assert page.url == stack.url
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()
    assert dialogs == [], f"a page opened a dialog: {dialogs}"


def run_id_of(page: Page) -> str:
    found = re.search(r"/runs/([^/?#]+)$", page.url)
    assert found, page.url
    return found.group(1)


def wait_status(page: Page, status: str, timeout: int = RUN_S) -> None:
    page.wait_for_function(
        "s => document.getElementById('run-status')?.dataset.status === s",
        arg=status,
        timeout=timeout,
    )


def start_workflow(page: Page, stack: Stack, workflow: str, topic: str) -> str:
    page.goto(f"{stack.url}start")
    page.select_option("#workflow-choice", workflow)
    page.wait_for_selector("#start-workflow")
    page.fill("#start-workflow input[name='input.topic']", topic)
    page.select_option("#start-workflow select[name=backend]", "nats")
    page.click("#start-workflow button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/run-"))
    return run_id_of(page)


def run_parallel_demo(page: Page, stack: Stack) -> str:
    """Start a parallel_demo run on nats from the start page; return once its page, never
    reloaded, showed every step succeeded."""
    run_id = start_workflow(page, stack, "parallel_demo", "live consoles")
    page.evaluate("window.__sameDocument = true")
    page.wait_for_function(
        "() => { const n = [...document.querySelectorAll('#graph g.node')];"
        " return n.length === 3 && n.every(g => g.dataset.status === 'succeeded'); }",
        timeout=RUN_S,
    )
    wait_status(page, "succeeded")
    assert page.evaluate("window.__sameDocument") is True
    stack.demo_run = run_id
    return run_id


def test_a_parallel_demo_run_started_on_nats_goes_all_succeeded_live_and_shows_outputs(
    stack: Stack, page: Page
) -> None:
    run_id = run_parallel_demo(page, stack)
    page.click("#graph g.node[data-step=summary]")
    output = page.locator("#step-summary .step-output")
    output.wait_for(timeout=10_000)
    stored = stack.store.read_result(run_id, "summary")
    assert stored is not None and stored.output
    assert output.inner_text().strip() == stored.output.strip()
    assert "live consoles" in output.inner_text()
    page.locator("#timeline rect.bar").first.wait_for()
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(stack.shots / "console-run.png"), full_page=True)


def test_a_run_cancelled_from_its_page_ends_cancelled(stack: Stack, page: Page) -> None:
    start_workflow(page, stack, "slow_demo", "a long wait")
    page.wait_for_function(
        "() => document.querySelector('#graph g.node[data-step=wait]')?.dataset.status"
        " === 'running'",
        timeout=RUN_S,
    )
    page.click("#cancel-form button")
    wait_status(page, "cancelled", timeout=30_000)
    node = page.locator("#graph g.node[data-step=wait]")
    assert node.get_attribute("data-status") == "cancelled"


def test_a_replay_from_a_step_with_a_set_lands_on_the_new_run_and_escapes_its_output(
    stack: Stack, page: Page
) -> None:
    # Each test stands alone (pytest-xdist may hand this one to a worker of its own).
    source = stack.demo_run or run_parallel_demo(page, stack)
    page.goto(f"{stack.url}runs/{source}")
    page.click("#replay summary")
    page.select_option("#replay-form select[name=from_step]", "summary")
    page.fill(
        "#replay-form textarea[name=sets]",
        "agent_providers.editor.script.replies=[\"<script>alert('pwned')</script> replayed\"]",
    )
    page.click("#replay-form button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/run-"))
    new_id = run_id_of(page)
    assert new_id != source
    assert page.locator("#replay-of").inner_text() == source
    wait_status(page, "succeeded")
    output = page.locator("#run-output")
    output.wait_for(timeout=10_000)
    assert output.inner_text().strip() == "<script>alert('pwned')</script> replayed"
    reused = page.locator("#step-benefits summary")
    assert f"reused from {source}" in reused.inner_text()


def test_a_goal_and_a_follow_up_in_one_session_both_get_answers(stack: Stack, page: Page) -> None:
    page.goto(f"{stack.url}start")
    page.fill("#start-goal textarea[name=goal]", "Explain durable agent workflows")
    page.fill("#start-goal input[name=session]", "e2e-talk")
    # inprocess: the run is driven by the `agentic run` child and followed through the store
    page.select_option("#start-goal select[name=backend]", "inprocess")
    page.click("#start-goal button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/run-"))
    first = run_id_of(page)
    page.wait_for_selector("#graph", timeout=RUN_S)  # planned: the page reloaded once
    wait_status(page, "succeeded")
    turns = page.locator("#conversation .turn")
    turns.first.locator(".answer").wait_for(timeout=10_000)
    page.fill("#followup-form textarea[name=goal]", "Now say how replay saves tokens")
    page.click("#followup-form button[type=submit]")
    page.wait_for_url(lambda url: "/runs/run-" in url and first not in url)
    page.wait_for_selector("#graph", timeout=RUN_S)
    wait_status(page, "succeeded")
    page.wait_for_function(
        "() => document.querySelectorAll('#conversation .turn .answer').length === 2",
        timeout=10_000,
    )
    goals = page.locator("#conversation .goal").all_inner_texts()
    assert "Explain durable agent workflows" in goals[0]
    assert "Now say how replay saves tokens" in goals[1]
    answers = page.locator("#conversation .answer").all_inner_texts()
    assert all(a.strip() for a in answers)
    planner = page.locator("#planner").inner_text()
    assert "Now say how replay saves tokens" in planner and "accepted" in planner
    second = run_id_of(page)
    record = stack.store.read_run(second)
    assert record.plan is not None and record.plan.get("session") == "e2e-talk"
    assert "Explain durable agent workflows" in record.plan["prompt"]  # the planner saw turn 1


def test_the_runs_page_lists_every_run_with_totals(stack: Stack, page: Page) -> None:
    if stack.demo_run is None:  # a worker of its own (pytest-xdist): one run to list
        run_parallel_demo(page, stack)
    page.goto(stack.url)
    stored = list(stack.store.headlines())
    rows = page.locator("#runs tbody tr[data-run]")
    assert [r.get_attribute("data-run") for r in rows.all()] == [h.run_id for h in stored]
    statuses = page.locator("#runs .status .badge").all_inner_texts()
    assert statuses == [h.status for h in stored]
    assert "tokens" in page.locator("#totals").inner_text()
    page.screenshot(path=str(stack.shots / "console-runs.png"), full_page=False)


def test_without_the_token_agentic_up_printed_the_console_answers_401(
    stack: Stack, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        answer = context.new_page().goto(stack.url)
        assert answer is not None and answer.status == 401
    finally:
        context.close()
