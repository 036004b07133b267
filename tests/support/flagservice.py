"""A team's service with an admin flag endpoint whose misbehaviour a test chooses, a stats endpoint
the gates read, and a webhook receiver: the real thing on loopback for the backend, kill-path and
metric-role tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from rollout.engine.project import Project
from rollout.util.serving import ServerThread
from tests.support import inprocess

TOKEN = "flag-admin-token-7f3a9c"
#: a service that obeys, the flag off, healthy stats
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "percent": 0,
    "mode": "ok",
    "refuse_percent": None,
    "rate": 0.0,
    "n": 100,
    "bad": 0.0,
    "stats_status": 200,
}


class FlagService:
    """A team's service with an admin flag endpoint whose misbehaviour a test chooses: ``echo``
    (a wrong token is quoted back in the 401 body), ``stuck`` (writes answer 200, nothing changes),
    ``hang`` (writes never answer in time), ``refuse`` (a write of ``refuse_percent`` answers
    500). ``/admin/flags/{name}`` is a flag of its own per name (one per environment, when several
    share the service), one that always obeys, in :attr:`named`. ``/stats`` serves the error rate
    the gates read; ``/hook/{mode}`` is a webhook receiver (``ok``, ``hang``)."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = dict(DEFAULTS)
        #: each ``/admin/flags/{name}``'s flag (``enabled``, ``percent``), made off at its first use
        self.named: dict[str, dict[str, Any]] = {}
        self.hooks: list[dict[str, Any]] = []
        #: each ``/stats`` call: its query parameters and Authorization header
        self.stats_calls: list[dict[str, Any]] = []
        app = FastAPI()

        def admin(request: Request) -> None:
            given = request.headers.get("authorization", "")
            if given != f"Bearer {TOKEN}":
                raise HTTPException(401, f"invalid token {given!r}")

        @app.get("/healthz")
        async def healthz() -> dict[str, Any]:
            return {"status": "ok"}

        @app.get("/admin/flag")
        async def get_flag(request: Request) -> dict[str, Any]:
            admin(request)
            return {"feature": {"enabled": self.state["enabled"], "percent": self.state["percent"]}}

        @app.put("/admin/flag")
        async def put_flag(request: Request) -> dict[str, Any]:
            admin(request)
            body = await request.json()
            if self.state["mode"] == "hang":
                await asyncio.sleep(3)
                return {"ok": True}
            if self.state["mode"] == "refuse" and body["share"] == self.state["refuse_percent"]:
                raise HTTPException(500, "cannot")
            if self.state["mode"] != "stuck":
                self.state["enabled"], self.state["percent"] = bool(body["on"]), int(body["share"])
            return {"ok": True}

        def named(name: str) -> dict[str, Any]:
            return self.named.setdefault(name, {"enabled": False, "percent": 0})

        @app.get("/admin/flags/{name}")
        async def get_named_flag(name: str, request: Request) -> dict[str, Any]:
            admin(request)
            return {"feature": dict(named(name))}

        @app.put("/admin/flags/{name}")
        async def put_named_flag(name: str, request: Request) -> dict[str, Any]:
            admin(request)
            body = await request.json()
            named(name).update(enabled=bool(body["on"]), percent=int(body["share"]))
            return {"ok": True}

        @app.get("/stats")
        async def stats(request: Request) -> JSONResponse:
            self.stats_calls.append(
                {"query": dict(request.query_params), "authorization": request.headers.get("authorization")}
            )
            if self.state.get("stats_status", 200) != 200:
                return JSONResponse({"error": "stats are down"}, self.state["stats_status"])
            return JSONResponse(
                {"rate": self.state["rate"], "n": self.state["n"], "ok": 0.0, "bad": self.state.get("bad", 0.0)}
            )

        @app.post("/hook/{mode}")
        async def hook(mode: str, request: Request) -> JSONResponse:
            self.hooks.append(
                {
                    "mode": mode,
                    "body": await request.json(),
                    "at": time.time(),
                    "authorization": request.headers.get("authorization"),
                }
            )
            if mode == "hang":
                await asyncio.sleep(4)
            return JSONResponse({"ok": True})

        self.server = ServerThread(app).start()
        self.url = self.server.url

    def reset(self, **changes: Any) -> FlagService:
        """Back to :data:`DEFAULTS` (with ``changes``), no webhook calls recorded: one server serves the session."""
        self.state.clear()
        self.state.update(DEFAULTS, **changes)
        self.named.clear()
        self.hooks.clear()
        self.stats_calls.clear()
        return self


def project_args(project: Project, *args: str, state: str | None = None) -> list[str]:
    """``ARGS`` on ``project``'s files (``state``: a state other than its SQLite file, a database URL)."""
    return [
        *args,
        "--playbook",
        str(project.playbook_path),
        "--environments",
        str(project.environments_dir),
        "--state",
        state or str(project.state_path),
    ]


def rollout_argv(project: Project, *args: str) -> list[str]:
    """The command line of ``rollout ARGS`` on ``project``'s files."""
    return [*inprocess.COMMAND, *project_args(project, *args)]


def rollout_cli(
    project: Project, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``rollout ARGS`` as a user runs it on ``project``'s files, with the flag endpoint's token set and no
    terminal."""
    return inprocess.run(
        project_args(project, *args),
        timeout=timeout,
        env={**os.environ, "FLAG_TOKEN": TOKEN, **(env or {})},
        cwd=project.playbook_path.parent,
    )
