"""The console's Starlette application: pages, live streams and actions.

| route | what |
|---|---|
| ``GET /`` | runs, newest first; filters (:class:`~agentic.console.listing.RunsQuery`) |
| ``GET /live/runs`` | server-sent events: the unfinished runs' status and progress |
| ``GET /start``, ``POST /start`` | start a catalog workflow or a goal (in a session) |
| ``GET /runs/{id}`` | a run: graph, timeline, steps, planner, lineage |
| ``GET /runs/{id}/details`` | the run page's parts that change, for the page to swap in |
| ``GET /runs/{id}/live`` | server-sent events: the run's view (:mod:`agentic.console.live`) |
| ``POST /runs/{id}/cancel``, ``POST /runs/{id}/replay`` | actions |
| ``GET /runs/{id}/artifacts/{step}/{path}`` | an artifact, as a download |

Every request passes :class:`agentic.console.guard.Guard`; every POST carries its form key.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from agentic import names, redact
from agentic.console import actions, live
from agentic.console.guard import Guard, same
from agentic.console.launch import Launcher, replay_args, run_args
from agentic.console.listing import STATUSES, RunLister, RunsQuery
from agentic.console.runpage import plan_summary, read_run_page
from agentic.contracts import BACKEND_NAMES
from agentic.errors import AgenticError, ConfigError, UnknownRunError
from agentic.ids import check_id, is_safe_id

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from starlette.types import ASGIApp

    from agentic.settings import Settings
    from agentic.store import RunStore

HERE = Path(__file__).parent
MAX_FORM_BYTES = 64 * 1024
START_WAIT_S = 30.0


@dataclass
class Console:
    """What the routes share: settings, the store, the runs lister and the launcher."""

    settings: Settings
    store: RunStore
    launcher: Launcher
    lister: RunLister = field(init=False)
    form_key: str = ""
    nats: NATS | None = None
    _nats_lock: asyncio.Lock | None = None

    def __post_init__(self) -> None:
        self.lister = RunLister(self.store)

    async def bus(self) -> NATS | None:
        """One NATS connection for every live page (None without a NATS URL)."""
        if not self.settings.nats_url:
            return None
        if self._nats_lock is None:
            self._nats_lock = asyncio.Lock()
        async with self._nats_lock:
            if self.nats is None:
                from agentic.bus import connect

                self.nats = await connect(self.settings, name="agentic-console")
        return self.nats

    async def close(self) -> None:
        if self.nats is not None:
            import nats.errors

            with contextlib.suppress(nats.errors.Error, OSError):
                await self.nats.close()
            self.nats = None
        await run_in_threadpool(self.launcher.stop)


# Every text is escaped, whatever a template's name (select_autoescape keys on .html only).
templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True)
)


def _fmt_tokens(value: int | None) -> str:
    return f"{value:,}" if value else "0"


def _fmt_cost(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}"


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} s" if value < 120 else f"{value / 60:.1f} min"


templates.env.filters.update(
    tokens=_fmt_tokens, cost=_fmt_cost, seconds=_fmt_s, masked_url=redact.mask_url
)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    console = console_of(request)
    context.update(form_key=console.form_key, backends=BACKEND_NAMES, settings=console.settings)
    return templates.TemplateResponse(request, name, context, status_code=status)


def refused(request: Request, message: str, status: int = 400) -> Response:
    return render(request, "error.html", status=status, message=message, status_code=status)


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed form, size-limited, with its form key checked.

    Raises:
        ActionError: too large, a file, or the key is missing or wrong.
    """
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise actions.ActionError(f"the form is larger than {MAX_FORM_BYTES} bytes")
    async with request.form(max_files=0, max_fields=200) as form:
        values = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    if not same(values.pop("form_key", None), console_of(request).form_key):
        raise actions.ActionError("this form expired or did not come from the console: reload")
    return values


# --- pages ----------------------------------------------------------------------------


async def runs_page(request: Request) -> Response:
    console = console_of(request)
    try:
        query = RunsQuery.parse(dict(request.query_params))
    except ConfigError as exc:
        return refused(request, str(exc))
    page = await run_in_threadpool(console.lister.page, query)
    return render(request, "runs.html", page=page, query=query, statuses=STATUSES)


async def run_page(request: Request) -> Response:
    console = console_of(request)
    run_id = request.path_params["run_id"]
    if not is_safe_id(run_id):
        return refused(request, "not a run id")
    try:
        page = await run_in_threadpool(read_run_page, console.store, run_id)
    except UnknownRunError:
        launch = console.launcher.get(run_id)
        if launch is None:
            return refused(
                request, f"no run {run_id!r} in {redact.mask_url(console.store.url)}", 404
            )
        return render(request, "starting.html", run_id=run_id, launch=launch)
    plan = plan_summary(page.plan) if page.plan else None
    return render(request, "run.html", page=page, plan=plan)


async def run_details(request: Request) -> Response:
    console = console_of(request)
    run_id = request.path_params["run_id"]
    if not is_safe_id(run_id):
        return refused(request, "not a run id")
    try:
        page = await run_in_threadpool(read_run_page, console.store, run_id)
    except UnknownRunError:
        return refused(request, f"no run {run_id!r}", 404)
    plan = plan_summary(page.plan) if page.plan else None
    return render(request, "details.html", page=page, plan=plan)


async def start_page(request: Request) -> Response:
    console = console_of(request)
    chosen = request.query_params.get("workflow") or ""
    inputs: list[str] = []
    try:
        catalog = await run_in_threadpool(actions.load_local_catalog, console.settings)
        if chosen and chosen not in catalog.workflows:
            return refused(request, f"workflow {chosen[:60]!r} is not in the catalog")
        if chosen:
            inputs = await run_in_threadpool(actions.workflow_inputs, catalog, chosen)
    except ConfigError as exc:  # a catalog that does not load: say where
        return refused(request, str(exc), 500)
    session = request.query_params.get("session") or ""
    if session and not is_safe_id(session):
        return refused(request, "not a session name")
    return render(
        request,
        "start.html",
        workflows=sorted(catalog.workflows),
        chosen=chosen,
        inputs=inputs,
        session=session,
        default_backend=console.settings.execution_backend,
    )


# --- actions --------------------------------------------------------------------------


async def start(request: Request) -> Response:
    console = console_of(request)
    try:
        form = await form_of(request)
        catalog = await run_in_threadpool(actions.load_local_catalog, console.settings)
        checked = await run_in_threadpool(actions.check_start, form, console.settings, catalog)
    except ConfigError as exc:
        return refused(request, str(exc))
    args = run_args(
        run_id=checked.run_id,
        backend=checked.backend,
        workflow=checked.workflow,
        goal=checked.goal,
        session=checked.session,
        inputs=dict(checked.inputs or {}),
        store_url=console.store.url,
    )
    launch = await run_in_threadpool(console.launcher.start, checked.run_id, args)
    if checked.workflow is not None:
        # Land on a page that has the run: wait until its run.json exists (or the child
        # ended without it: the starting page shows why).
        await _created(console, checked.run_id, launch)
    return RedirectResponse(f"/runs/{checked.run_id}", status_code=303)


async def _created(console: Console, run_id: str, launch: Any) -> None:
    deadline = asyncio.get_running_loop().time() + START_WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        if await run_in_threadpool(console.store.run_exists, run_id):
            return
        if launch.exit_code is not None:
            return
        await asyncio.sleep(0.05)


async def cancel(request: Request) -> Response:
    console = console_of(request)
    run_id = request.path_params["run_id"]
    try:
        await form_of(request)
        check_id(run_id, "run id")
        record = await run_in_threadpool(console.store.read_run, run_id)
        await run_in_threadpool(actions.cancel, console.store, record, console.settings)
    except UnknownRunError as exc:
        return refused(request, str(exc), 404)
    except ConfigError as exc:
        return refused(request, str(exc))
    return RedirectResponse(f"/runs/{run_id}", status_code=303)


async def replay(request: Request) -> Response:
    console = console_of(request)
    run_id = request.path_params["run_id"]
    try:
        form = await form_of(request)
        check_id(run_id, "run id")
        checked = await run_in_threadpool(
            actions.check_replay, form, run_id, console.store, console.settings
        )
    except UnknownRunError as exc:
        return refused(request, str(exc), 404)
    except ConfigError as exc:
        return refused(request, str(exc))
    args = replay_args(
        source=checked.source,
        new_id=checked.new_id,
        from_step=checked.from_step,
        backend=checked.backend,
        sets=checked.sets,
        store_url=console.store.url,
    )
    launch = await run_in_threadpool(console.launcher.start, checked.new_id, args)
    await _created(console, checked.new_id, launch)
    return RedirectResponse(f"/runs/{checked.new_id}", status_code=303)


async def artifact(request: Request) -> Response:
    console = console_of(request)
    run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
    relpath = request.path_params["path"]
    if not (is_safe_id(run_id) and is_safe_id(step_id) and names.is_safe_artifact_path(relpath)):
        return refused(request, "not an artifact path")
    try:
        data = await run_in_threadpool(console.store.read_artifact, run_id, step_id, relpath)
    except UnknownRunError as exc:
        return refused(request, str(exc), 404)
    filename = relpath.rsplit("/", 1)[-1]
    mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    # Always a download: an artifact is a model's output and must never run as a page here.
    return Response(
        data,
        media_type=mime if not mime.startswith(("text/html", "image/svg")) else "text/plain",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


# --- live -----------------------------------------------------------------------------


async def run_live(request: Request) -> Response:
    console = console_of(request)
    run_id = request.path_params["run_id"]
    if not is_safe_id(run_id):
        return PlainTextResponse("not a run id", 400)
    return EventSourceResponse(_run_messages(console, run_id), ping=15)


async def _run_messages(console: Console, run_id: str) -> AsyncIterator[dict[str, str]]:
    record = await run_in_threadpool(console.store.readable_run, run_id)
    while record is None:  # started from here, not created yet
        launch = console.launcher.get(run_id)
        if launch is None:
            yield {"event": "gone", "data": "{}"}
            return
        if launch.exit_code is not None:
            record = await run_in_threadpool(console.store.readable_run, run_id)
            if record is None:
                yield {"event": "launch_failed", "data": launch.tail()[-2000:]}
                return
            break
        await asyncio.sleep(live.POLL_S)
        record = await run_in_threadpool(console.store.readable_run, run_id)
    yield {"event": "created", "data": run_id}
    try:
        nc = await console.bus() if record.backend == "nats" and not record.is_terminal else None
        messages = (
            live.follow_nats(nc, console.settings, console.store, record)
            if nc is not None
            else live.follow_store(console.store, run_id)
        )
        async for message in messages:
            yield {"event": "view", "data": message}
    except AgenticError as exc:  # NATS went away: the store still knows
        yield {"event": "notice", "data": f"following from the store: {exc}"}
        async for message in live.follow_store(console.store, run_id):
            yield {"event": "view", "data": message}


async def runs_live(request: Request) -> Response:
    console = console_of(request)

    async def messages() -> AsyncIterator[dict[str, str]]:
        async for message in live.follow_open_runs(console.store):
            yield {"event": "runs", "data": message}

    return EventSourceResponse(messages(), ping=15)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(
    settings: Settings,
    *,
    token: str | None = None,
    store: RunStore | None = None,
    launcher: Launcher | None = None,
    child_env: Mapping[str, str] | None = None,
) -> ASGIApp:
    """The console for ``settings``'s run store, behind its :class:`Guard`.

    Args:
        settings: The store, the catalog, the NATS URL, the default backend.
        token: ``AGENTIC_CONSOLE_TOKEN`` (None: loopback only).
        store: The run store (default: ``settings.run_store_url``).
        launcher: Starts runs (default: ``agentic`` children with ``child_env``).
        child_env: The children's environment (default: this process's).
    """
    import os

    from agentic.store import open_run_store

    store = store if store is not None else open_run_store(settings)
    env = dict(child_env if child_env is not None else os.environ)
    env.pop("AGENTIC_CONSOLE_TOKEN", None)  # the runs it starts have no use for it
    console = Console(settings, store, launcher or Launcher(env))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await console.close()

    routes = [
        Route("/", runs_page),
        Route("/healthz", healthz),
        Route("/live/runs", runs_live),
        Route("/start", start_page, methods=["GET"]),
        Route("/start", start, methods=["POST"]),
        Route("/runs/{run_id}", run_page),
        Route("/runs/{run_id}/details", run_details),
        Route("/runs/{run_id}/live", run_live),
        Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/runs/{run_id}/replay", replay, methods=["POST"]),
        Route("/runs/{run_id}/artifacts/{step_id}/{path:path}", artifact),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    guard = Guard(app, token=token)
    console.form_key = guard.form_key
    app.state.console = console
    return guard
