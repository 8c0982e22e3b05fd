// agentic console: live updates over server-sent events, no framework.
"use strict";

const ENDED = new Set(["succeeded", "failed", "cancelled", "skipped"]);

function setBadge(el, status) {
  if (!el) return;
  el.className = el.className.replace(/\bs-[a-z]+\b/g, "").trim() + " s-" + status;
  el.textContent = status;
  el.dataset.status = status;
}

function followRuns() {
  const source = new EventSource("/live/runs");
  source.addEventListener("runs", (msg) => {
    const rows = JSON.parse(msg.data);
    for (const [runId, row] of Object.entries(rows)) {
      const tr = document.querySelector(`tr[data-run="${CSS.escape(runId)}"]`);
      if (!tr) continue;
      setBadge(tr.querySelector(".status .badge"), row.status);
      tr.querySelector(".progress").textContent = `${row.steps_succeeded}/${row.steps_total}`;
    }
  });
}

function openStep(stepId) {
  const panel = document.getElementById("step-" + stepId);
  if (!panel) return;
  panel.open = true;
  panel.scrollIntoView({ behavior: "smooth", block: "start" });
}

async function refreshDetails(runId) {
  const holder = document.getElementById("details");
  if (!holder) return;
  const open = [...holder.querySelectorAll("details[open]")].map((d) => d.id);
  const response = await fetch(`/runs/${encodeURIComponent(runId)}/details`, { credentials: "same-origin" });
  if (!response.ok) return;
  holder.innerHTML = await response.text();
  for (const id of open) {
    const d = document.getElementById(id);
    if (d) d.open = true;
  }
}

function applyView(view, runId, seen) {
  setBadge(document.getElementById("run-status"), view.status);
  let ended = false;
  for (const [stepId, step] of Object.entries(view.steps)) {
    const node = document.querySelector(`#graph g.node[data-step="${CSS.escape(stepId)}"]`);
    if (node) {
      node.setAttribute("class", "node status-" + step.status);
      node.dataset.status = step.status;
      node.querySelector(".node-status").textContent =
        step.status + (step.attempt > 1 ? ` (attempt ${step.attempt})` : "") + (step.message ? ` · ${step.message}` : "");
    }
    const key = step.status + "/" + step.attempt;
    if (seen[stepId] !== key) {
      if (seen[stepId] !== undefined || ENDED.has(step.status)) ended = true;
      seen[stepId] = key;
    }
  }
  if (view.finished) {
    document.body.dataset.finished = "1";
    const cancel = document.getElementById("cancel-form");
    if (cancel) cancel.remove();
  }
  if (ended || view.finished) refreshDetails(runId);
}

function followRun(runId) {
  const starting = document.body.dataset.starting === "1";
  const seen = {};
  const source = new EventSource(`/runs/${encodeURIComponent(runId)}/live`);
  source.addEventListener("created", () => {
    if (starting) { source.close(); window.location.reload(); }
  });
  source.addEventListener("launch_failed", (msg) => {
    source.close();
    setBadge(document.getElementById("run-status"), "failed");
    const box = document.getElementById("launch-error");
    if (box) { box.hidden = false; box.textContent = msg.data || "the run could not start"; }
  });
  source.addEventListener("view", (msg) => {
    const view = JSON.parse(msg.data);
    applyView(view, runId, seen);
    if (view.finished) source.close();
  });
  source.addEventListener("gone", () => source.close());
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "runs") followRuns();
  if (page === "run") {
    const runId = document.body.dataset.run;
    if (document.body.dataset.finished !== "1") followRun(runId);
    for (const node of document.querySelectorAll("#graph g.node")) {
      node.addEventListener("click", () => openStep(node.dataset.step));
      node.addEventListener("keydown", (e) => { if (e.key === "Enter") openStep(node.dataset.step); });
    }
  }
  const choice = document.getElementById("workflow-choice");
  if (choice) choice.addEventListener("change", () => choice.form.submit());
});
