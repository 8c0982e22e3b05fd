"""``agentic console``: a web console of the run store, served on this machine.

Pages (server-rendered, a little vanilla JavaScript, no build step): the runs, newest
first with filters and totals; a run with its step graph, timeline, steps (task as sent,
output, error, usage, worker, provider, artifacts), planner record, session and replay
lineage, updated live over server-sent events; a form to start a catalog workflow or a
goal. Actions go through the CLI's own code paths. docs/console.md is the user's page.

Modules: :mod:`~agentic.console.app` (routes), :mod:`~agentic.console.guard` (token,
loopback, form keys), :mod:`~agentic.console.listing` (the runs page),
:mod:`~agentic.console.runpage` and :mod:`~agentic.console.layout` (the run page),
:mod:`~agentic.console.live` (the fold fed from NATS or the store),
:mod:`~agentic.console.actions` and :mod:`~agentic.console.launch` (start, cancel,
replay), :mod:`~agentic.console.serve` (uvicorn).
"""

from __future__ import annotations
