"""The dashboard's web app: an overview of every environment of every project it serves, a page per
environment, their updates pushed as server-sent events, and the actions.

Rows are built and kept by one :class:`~rollout.dashboard.detector.ChangeDetector` per process, which
follows each state store with one cheap query a tick and pushes what changed to every open page
(:mod:`rollout.dashboard.events`); a page's load reads those rows, and an environment page reads its
own evaluations and audit once (:mod:`rollout.dashboard.envpage`). Pages are plain HTML, CSS and
JavaScript shipped in the package (charts are SVG drawn in the page), no build step.

It acts through the same library functions as the CLI: Roll back is
:func:`rollout.engine.runner.rollback`; Approve records the approval and runs ``rollout advance
--approve --yes`` as its own process (an advance runs for as long as its ramp, not a request). The
actions need the dashboard's token; without one configured the dashboard is read-only.
``/metrics`` is the tool's own metrics for Prometheus (:mod:`rollout.dashboard.metrics`);
``/api/state`` the whole state as one document, for scripts.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from rollout.console import QuietReporter
from rollout.dashboard import events
from rollout.dashboard.detector import TICK_S, ChangeDetector
from rollout.dashboard.envpage import environment_page
from rollout.dashboard.metrics import exposition
from rollout.engine import runner
from rollout.engine.drill import last_drill
from rollout.engine.flagview import FlagReads, flag_view
from rollout.engine.forecasting import phase_forecast
from rollout.engine.project import Project, open_context
from rollout.engine.runner import rollback
from rollout.engine.state import AWAITING_APPROVAL, COMPLETED, HELD, ROLLED_BACK, RUNNING, EnvState
from rollout.engine.waves import wave_view
from rollout.incident.chart import ramp_start, timeline_svg
from rollout.incident.words import audit_words
from rollout.playbook.environments import load_environment
from rollout.playbook.model import Phase, Playbook, RampStep, step_label
from rollout.playbook.schedule import Schedule
from rollout.util.clock import Clock, SystemClock
from rollout.util.errors import ConfigError, RolloutError, StateError
from rollout.util.numbers import finite

STATIC = Path(__file__).parent / "static"


#: what a project may be called in the dashboard's URLs
PROJECT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class Action(BaseModel):
    environment: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    reason: str = Field(min_length=1, max_length=500)
    #: which project's environment (needed only when several projects run one of that name)
    project: str | None = Field(None, min_length=1, max_length=100)


class Promotion(Action):
    #: 100 % now; needs ``confirm``
    full: bool = False
    confirm: bool = False


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _at_a_glance(
    playbook: Playbook, phase: Phase | None, row: EnvState, view_percent: int | None, last_ts: float | None, now: float
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The phase's steps with the current one marked, and, on a ramp, its planned percentages with
    the one in force and the time left in the hold and to the next evaluation (Argo Rollouts'
    dashboard, read at a glance)."""
    if phase is None:
        return [], None
    here = row.phase == phase.name
    finished = here and row.status == COMPLETED
    steps = [
        {
            "label": step_label(step, i),
            "kind": step.kind,
            "state": "done"
            if here and (finished or i < row.step_index)
            else "current"
            if here and i == row.step_index
            else "next",
        }
        for i, step in enumerate(phase.steps)
    ]
    if not here or finished or row.step_index >= len(phase.steps):
        return steps, None
    step = phase.steps[row.step_index]
    if not isinstance(step, RampStep):
        return steps, None
    index = min(row.ramp_index, len(step.percentages) - 1)
    in_force = index if row.ramp_applied else index - 1
    interval = step.interval or playbook.interval
    ramp = {
        "percentages": step.percentages,
        "in_force": in_force,
        "percent": view_percent,
        "hold_s": step.hold,
        "hold_left_s": None if row.observe_started is None else round(row.observe_started + step.hold - now, 1),
        "next_evaluation_s": None
        if last_ts is None or row.status not in (RUNNING, HELD)
        else round(max(0.0, last_ts + interval - now), 1),
    }
    return steps, ramp


def _schedule(project: Project, phase: Phase | None, name: str, now: float) -> dict[str, Any] | None:
    """When the environment's ramp may next move up and what is frozen (None: no schedule keys)."""
    try:
        schedule = Schedule.of(load_environment(name, project.environments_dir), phase)
    except RolloutError:
        schedule = Schedule.of(phase)
    return None if schedule.empty else schedule.as_dict(now)


def snapshot(project: Project, now: float | None = None, reads: FlagReads | None = None) -> dict[str, Any]:
    """Every environment as a person should read it, each with its last ramp's chart and the phase
    at a glance, and the audit timeline (verdict reasons in full), newest first; ``reads``: flag
    reads to reuse (:class:`~rollout.engine.flagview.FlagReads`). Never an Infinity or a NaN."""
    now = time.time() if now is None else now
    try:
        playbook = project.playbook()
    except RolloutError:
        playbook = None
    state = project.state(read_only=True)
    try:
        rows, timeline = [], []
        for row in state.all():
            audit = state.audit_log(row.name, limit=2000)
            verdicts = state.verdicts(row.name, limit=2000)
            view = flag_view(project, playbook, state, row, reads)
            phase = playbook.phase_for(row.name) if playbook else None
            _, first_ramp = ramp_start(audit)
            ramp_verdicts = [v for v in verdicts if first_ramp is not None and v["ts"] >= first_ramp]
            offs = [a["ts"] for a in audit if a["action"] == "flag_off" and first_ramp and a["ts"] >= first_ramp]
            names = [m["metric"] for m in (ramp_verdicts[-1]["metrics"] if ramp_verdicts else [])]
            step = None
            if phase is not None and row.phase == phase.name and row.step_index < len(phase.steps):
                step = (
                    f"{row.step_index + 1}/{len(phase.steps)} {step_label(phase.steps[row.step_index], row.step_index)}"
                )
            last = ramp_verdicts[-1] if ramp_verdicts else None
            holder = state.holder(row.name)
            steps, ramp = (
                _at_a_glance(playbook, phase, row, view.percent, verdicts[-1]["ts"] if verdicts else None, now)
                if playbook is not None
                else ([], None)
            )
            rows.append(
                {
                    "name": row.name,
                    "status": view.status,
                    "phase": row.phase,
                    "step": step,
                    "percent": view.percent,
                    "flag": {True: "on", False: "off", None: "?"}[view.flag],
                    "flag_source": view.source or "recorded",
                    "commit": (row.commit_sha or "")[:12],
                    "reason": row.reason,
                    "lock": f"{holder['owner']} (pid {holder['pid']})" if holder else None,
                    "evaluations": len(ramp_verdicts),
                    "last_verdict": {
                        "verdict": last["verdict"],
                        "summary": last["summary"],
                        "when": _when(last["ts"]),
                        "samples": {m["metric"]: m["samples"] for m in last["metrics"]},
                    }
                    if last
                    else None,
                    "chart": timeline_svg(ramp_verdicts, names, offs[-1] if offs else None) if ramp_verdicts else None,
                    "can_approve": row.status == AWAITING_APPROVAL,
                    # a person's hand on a running step: pause / continue, promote (the step, or 100 % now)
                    "paused": state.control(row.name).paused,
                    "can_steer": row.status not in (ROLLED_BACK, COMPLETED),
                    "steps": steps,
                    "ramp": ramp,
                    "schedule": _schedule(project, phase, row.name, now),
                    # the last kill-switch drill: each flag-off's slowest replica, every replica's time
                    "drill": last_drill(audit),
                    # a phase in waves: which wave, its regions, the exposure against the budget, who failed
                    "wave": wave_view(playbook, state, row.name, now),
                }
            )
            timeline += [
                {
                    "ts": a["ts"],
                    "when": _when(a["ts"]),
                    "environment": row.name,
                    "who": a["actor"],
                    "what": a["action"],
                    "detail": audit_words(a["action"], a["detail"]),
                }
                for a in audit[-200:]
            ]
            timeline += [
                {
                    "ts": v["ts"],
                    "when": _when(v["ts"]),
                    "environment": row.name,
                    "who": "rollout",
                    "what": f"verdict {v['verdict']}",
                    "detail": f"{v['step']}"
                    + (f" at {v['percent']}%" if v["percent"] is not None else "")
                    + f": {v['summary']}",
                }
                for v in verdicts[-200:]
                if v["verdict"] != "pass" or v is verdicts[-1]
            ]
    finally:
        state.close()
    timeline.sort(key=lambda e: e["ts"], reverse=True)
    return finite({"environments": rows, "timeline": timeline[:200]})


def project_name(project: Project) -> str:
    """The name a project is shown under: its playbook's ``name`` as a URL segment (else the file's stem)."""
    try:
        name = project.playbook().name
    except RolloutError:
        name = Path(project.playbook_path).stem
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:100]
    return slug or "project"


def create_dashboard(
    projects: Project | Mapping[str, Project], token: str | None, clock: Clock | None = None, tick_s: float = TICK_S
) -> FastAPI:
    """The dashboard for ``projects`` (name -> project, in the order to show them; one project is named
    by :func:`project_name`); ``token`` (None: read-only) guards the actions; the stores are asked what
    changed every ``tick_s`` seconds."""
    clock = clock or SystemClock()
    named = dict(projects) if isinstance(projects, Mapping) else {project_name(projects): projects}
    for name in named:
        if not PROJECT_NAME.match(name):
            raise ConfigError(f"project name {name!r}: letters, digits, '_', '.' and '-' only (it is a URL segment)")
    detector = ChangeDetector(named, clock, tick_s)
    # the state and metrics pages read each environment's flag at most once a second, however often
    # they are asked (they need no token); every action reads afresh
    reads = {name: FlagReads() for name in named}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        detector.start()
        try:
            yield
        finally:
            detector.stop()

    app = FastAPI(title="rollout dashboard", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(GZipMiddleware, minimum_size=2048)
    app.state.detector = detector
    #: the server ends open event streams before waiting for its connections to close (util/serving.py)
    app.state.end_streams = detector.close_streams

    def authorize(request: Request) -> str:
        if not token:
            raise HTTPException(403, "the dashboard is read-only (start it with a token to act)")
        given = request.headers.get("authorization", "")
        if not given.lower().startswith("bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
            raise HTTPException(401, "missing or wrong dashboard token")
        who = (request.headers.get("x-actor") or "someone").strip()[:64] or "someone"
        return f"{who} via dashboard"

    def project_of(action: Action) -> Project:
        """The project whose ``action.environment`` is meant: the one named, else the only one running it."""
        if action.project is not None:
            if action.project not in named:
                raise HTTPException(404, f"no project {action.project!r} in this dashboard")
            return named[action.project]
        if len(named) == 1:
            return next(iter(named.values()))
        running = [n for n in named if detector.row(f"{n}/{action.environment}") is not None]
        if len(running) != 1:
            raise HTTPException(
                400,
                f"name the project of {action.environment}: "
                + (f"{', '.join(running)} run one" if running else "no project runs it"),
            )
        return named[running[0]]

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code)

    @app.exception_handler(RolloutError)
    async def _rollout(request: Request, exc: RolloutError) -> JSONResponse:
        redacted = str(exc)
        for project in named.values():
            redacted = project.redactor.text(redacted)
        # the environment's state refuses it (rolled back, nothing running): a conflict, not a bad request
        return JSONResponse({"error": redacted}, 409 if isinstance(exc, StateError) else 400)

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/env/{project}/{env}")
    async def env_page(project: str, env: str) -> FileResponse:
        return FileResponse(STATIC / "env.html", media_type="text/html")

    @app.get("/static/{name}")
    async def asset(name: str) -> FileResponse:
        path = STATIC / name
        if name not in {p.name for p in STATIC.iterdir()}:
            raise HTTPException(404, "no such asset")
        return FileResponse(path)

    @app.get("/metrics")
    def metrics() -> Response:
        """The tool's own metrics for Prometheus (read-only, like the state)."""
        return Response(exposition(named, reads), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/overview")
    def overview() -> dict[str, Any]:
        """Every environment's row, in the overview's order, and the id to follow the event stream from."""
        last_id, rows, problems = detector.snapshot()
        return {
            "id": last_id,
            "now": clock.time(),
            "writable": bool(token),
            "projects": list(named),
            "problems": problems,
            "rows": rows,
        }

    @app.get("/api/env/{project}/{env}")
    def environment(project: str, env: str) -> dict[str, Any]:
        """One environment's page: its row, steps, current run's evaluations, verdicts, audit and flag."""
        key = f"{project}/{env}"
        last_id, _, _ = detector.snapshot()
        row = detector.row(key)
        found = detector.project(project)
        if row is None or found is None:
            raise HTTPException(404, f"no environment {env!r} in project {project!r}")
        return {
            "id": last_id,
            "now": clock.time(),
            "writable": bool(token),
            "row": row,
            **environment_page(found[0], found[1], env, now=clock.time()),
            "flag": detector.flag_of(key),
        }

    @app.get("/api/events")
    async def event_stream(request: Request, env: str | None = None, since: str | None = None) -> StreamingResponse:
        """Server-sent events: the overview's changes, or (``env=PROJECT/ENV``) one environment page's."""
        if env is not None and detector.row(env) is None:
            raise HTTPException(404, f"no environment {env!r}")
        sub = detector.subscribe(asyncio.get_running_loop(), env)
        last_id = request.headers.get("last-event-id") or since
        return StreamingResponse(
            events.stream(detector, sub, last_id),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/api/state")
    def state() -> dict[str, Any]:
        """Every environment of every project with its ramp chart, and the audit timeline: the whole state
        as one document, for scripts (the pages read the overview, an environment's page and the events)."""
        now = clock.time()
        found: dict[str, Any] = {"environments": [], "timeline": []}
        for name, project in named.items():
            one = snapshot(project, now, reads[name])
            found["environments"] += [{"project": name, **env} for env in one["environments"]]
            found["timeline"] += [{"project": name, **entry} for entry in one["timeline"]]
        found["timeline"] = sorted(found["timeline"], key=lambda e: e["ts"], reverse=True)[:200]
        return {**found, "writable": bool(token), "now": now}

    @app.get("/api/forecast/{env}")
    def forecast(env: str, traffic: str | None = None, project: str | None = None) -> dict[str, Any]:
        """Each ramp step's forecast, as ``plan`` gives it (``?traffic=50/s``, else the provider's last
        hour; ``?project=`` where the dashboard shows several); read-only, no token."""
        chosen = next(iter(named.values())) if project is None and len(named) == 1 else named.get(project or "")
        if chosen is None:
            raise HTTPException(400, f"name the project of {env} (?project=): {', '.join(named)}")
        with open_context(chosen, env, clock, QuietReporter(), read_only=True) as ctx:
            return dict(chosen.redactor.value(phase_forecast(ctx, traffic)))

    @app.post("/api/rollback")
    def do_rollback(action: Action, request: Request) -> dict[str, Any]:
        who = authorize(request)
        outcome = rollback(project_of(action), action.environment, action.reason, clock, who=who)
        for held in reads.values():
            held.forget()
        return {**outcome.as_dict(), "ok": outcome.exit_code == 0}

    @app.post("/api/pause")
    def do_pause(action: Action, request: Request) -> dict[str, Any]:
        who = authorize(request)
        outcome = runner.pause(project_of(action), action.environment, action.reason, clock, who=who)
        return {**outcome.as_dict(), "ok": True}

    @app.post("/api/continue")
    def do_continue(action: Action, request: Request) -> dict[str, Any]:
        who = authorize(request)
        outcome = runner.unpause(project_of(action), action.environment, action.reason, clock, who=who)
        return {**outcome.as_dict(), "ok": True}

    @app.post("/api/promote")
    def do_promote(action: Promotion, request: Request) -> dict[str, Any]:
        who = authorize(request)
        if action.full and not action.confirm:
            raise HTTPException(409, "promote to 100% now turns the feature on for every customer: confirm it")
        outcome = runner.promote_now(
            project_of(action), action.environment, action.reason, clock, who=who, full=action.full
        )
        return {**outcome.as_dict(), "ok": True}

    @app.post("/api/approve")
    def approve(action: Action, request: Request) -> dict[str, Any]:
        who = authorize(request)
        project = project_of(action)
        store = project.state()
        try:
            current = store.get(action.environment)
            if current.status != AWAITING_APPROVAL:
                raise HTTPException(409, f"{action.environment} is {current.status}, not awaiting approval")
            store.audit(action.environment, "approval_requested", clock.time(), who=who, reason=action.reason)
        finally:
            store.close()
        log = project.state_path.parent / f"dashboard-advance-{action.environment}.log"
        args = [
            sys.executable,
            "-m",
            "rollout",
            "advance",
            "--env",
            action.environment,
            "--approve",
            "--yes",
            "--playbook",
            str(project.playbook_path),
            "--environments",
            str(project.environments_dir),
            "--state",
            project.state_url or str(project.state_path),
            "--repo",
            str(project.repo_path),
        ]
        if project.secrets_file:
            args += ["--secrets-file", str(project.secrets_file)]
        with open(log, "ab") as out:
            subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "ROLLOUT_ACTOR": who},
            )
        return {"ok": True, "status": "approved", "message": f"advance started for {action.environment}; log: {log}"}

    return app
