"""A stand-in for a team's own service, with nothing of the embedded WhatsApp service in it: a
health endpoint, Prometheus counters at ``/metrics``, a JSON stats endpoint, and an admin flag
endpoint behind a bearer token. ``POST /work?user=ID`` takes the new code path when the flag is on
and the user's bucket is within the percentage; the new path fails with ``fail_rate``, both paths with
``everyone_fail_rate``."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, Counter, generate_latest

from rollout.booking.cohort import in_rollout
from rollout.util.serving import ServerThread

TOKEN = "standin-admin-token-42"


def create_standin() -> FastAPI:
    app = FastAPI()
    registry = CollectorRegistry()
    requests = Counter("standin_requests", "Requests by code path", ["path"], registry=registry)
    errors = Counter("standin_errors", "Failed requests by code path", ["path"], registry=registry)
    state: dict[str, Any] = {
        "enabled": False,
        "percent": 0,
        "fail_rate": 0.0,
        "everyone_fail_rate": 0.0,
        "new": [0, 0],
        "writes": 0,
    }
    rng = random.Random(7)

    def admin(request: Request) -> None:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            raise HTTPException(401, "unauthorized")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": "1.2.3"}

    @app.get("/admin/flag")
    async def get_flag(request: Request) -> dict[str, Any]:
        admin(request)
        return {"feature": {"enabled": state["enabled"], "percent": state["percent"]}}

    @app.put("/admin/flag")
    async def put_flag(request: Request) -> dict[str, Any]:
        admin(request)
        body = await request.json()
        state["enabled"], state["percent"] = bool(body["on"]), int(body["share"])
        state["writes"] += 1
        return {"ok": True}

    @app.put("/admin/faults")
    async def faults(request: Request) -> dict[str, Any]:
        state["fail_rate"] = float((await request.json())["fail_rate"])
        return {"ok": True}

    @app.post("/work")
    async def work(user: str) -> dict[str, Any]:
        new = state["enabled"] and in_rollout("standin", user, state["percent"])
        path = "new" if new else "old"
        requests.labels(path).inc()
        # fail_rate: the new code path is bad; everyone_fail_rate: a bad day for both paths alike
        failed = (new and rng.random() < state["fail_rate"]) or rng.random() < state["everyone_fail_rate"]
        if new:
            state["new"][0] += 1
            state["new"][1] += int(failed)
        if failed:
            errors.labels(path).inc()
            raise HTTPException(500, "the request failed")
        return {"path": path}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        total, failed = state["new"]
        return {"new_path": {"requests": total, "error_rate": failed / total if total else None}}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry).decode())

    app.state.flag = state
    return app


class StandIn:
    """The stand-in served from a thread, with a traffic generator that runs until closed."""

    def __init__(self) -> None:
        self.app = create_standin()
        self.server = ServerThread(self.app).start()
        self.url = self.server.url
        self.host_port = self.url.removeprefix("http://")
        self._stop = threading.Event()
        self._traffic: threading.Thread | None = None

    @property
    def flag(self) -> dict[str, Any]:
        return self.app.state.flag

    def faults(self, fail_rate: float) -> None:
        httpx.put(f"{self.url}/admin/faults", json={"fail_rate": fail_rate}).raise_for_status()

    def start_traffic(self, per_second: float = 60.0) -> None:
        """Requests from ever new users at ``per_second``, in the background, until :meth:`close`."""

        def run() -> None:
            with httpx.Client(base_url=self.url, timeout=5) as http:
                n = 0
                while not self._stop.is_set():
                    n += 1
                    http.post("/work", params={"user": f"u{n}"})
                    time.sleep(1.0 / per_second)

        self._traffic = threading.Thread(target=run, daemon=True)
        self._traffic.start()

    def close(self) -> None:
        self._stop.set()
        if self._traffic is not None:
            self._traffic.join(10)
        self.server.stop()
