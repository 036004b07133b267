"""Real processes and servers for tests: the sandbox and the service on 127.0.0.1, free ports."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from rollout.booking.sandbox.app import create_sandbox_app
from rollout.booking.service.app import create_app
from rollout.booking.service.settings import LiveSettings
from rollout.util.clock import ManualClock
from rollout.util.envfile import write_env_file
from rollout.util.serving import ServerThread
from tests.support.inprocess import COMMAND

SANDBOX_TOKEN = "sandbox-token-0123456789"
ADMIN_TOKEN = "admin-token-0123456789"
PHONE = "+919876543210"


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it is truthy; the background worker runs in real time.

    Every 10 ms at first, then less often (at most every 50 ms): most predicates ask a server in the
    same process over HTTP, and on 2 cores a long wait polled every 10 ms took CPU from the other workers."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 1.25, 0.05)


class Sandbox:
    """The sandbox served from a thread, with its control API at hand."""

    def __init__(self, seed: int = 1) -> None:
        self.app = create_sandbox_app(SANDBOX_TOKEN, seed=seed)
        self.server = ServerThread(self.app).start()
        self.url = self.server.url
        self.api_url = f"{self.url}/api/wpbox"
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}, timeout=10)

    def faults(self, **changes: Any) -> dict[str, Any]:
        response = self.http.patch("/sandbox/faults", json=changes)
        assert response.status_code == 200, response.text
        return response.json()

    def messages(self) -> list[dict[str, Any]]:
        return self.http.get("/sandbox/messages").json()["messages"]

    def stats(self) -> dict[str, Any]:
        return self.http.get("/sandbox/stats").json()

    def close(self) -> None:
        self.http.close()
        self.server.stop()


def base_env(sandbox_url: str, **overrides: Any) -> dict[str, str]:
    env = {
        "WHATSAPP_NOTIFICATIONS_ENABLED": "true",
        "WHATSAPP_ROLLOUT_PERCENT": "100",
        "ZAPTRA_API_URL": sandbox_url,
        "ZAPTRA_API_TOKEN": SANDBOX_TOKEN,
        "WHATSAPP_FALLBACK_ENABLED": "true",
        "WHATSAPP_RETRY_ATTEMPTS": "3",
        "WHATSAPP_TIMEOUT_MS": "2000",
        "WHATSAPP_DEBUG": "false",
        "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    env.update({key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in overrides.items()})
    return env


class Service:
    """The real service app served from a thread, with a manual clock and files in ``folder``."""

    def __init__(
        self,
        folder: Path,
        env: dict[str, str],
        clock: ManualClock | None = None,
        flag_source: Any = None,
        db: str | None = None,
        replica_id: str | None = None,
    ) -> None:
        self.folder = folder
        self.env_file = folder / "service.env"
        self.db = db or folder / "service.db"
        self.log_file = folder / "events.log"
        self.clock = clock or ManualClock()
        self.env = dict(env)
        if not self.env_file.exists():
            write_env_file(self.env_file, self.env)
        self.live = LiveSettings(env_file=self.env_file, environ={})
        self.app = create_app(
            self.live, self.db, clock=self.clock, log_path=self.log_file, flag_source=flag_source, replica_id=replica_id
        )
        self.server = ServerThread(self.app).start()
        self.url = self.server.url
        self.http = httpx.Client(base_url=self.url, timeout=15)
        self.admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def set_env(self, **changes: Any) -> None:
        """Write changed variables to the env file, as the rollout engine does, and wait until the
        service has re-read it (its config generation moves)."""
        generation = self.metrics(60)["config_generation"]
        self.env.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in changes.items()})
        write_env_file(self.env_file, self.env)
        wait_until(lambda: self.metrics(60)["config_generation"] > generation, timeout=5, what="config re-read")

    def book(self, n: int = 1, customer: str | None = None, phone: str = PHONE, **fields: Any) -> dict[str, Any]:
        body = booking_body(n, customer=customer, phone=phone, **fields)
        response = self.http.post("/api/bookings", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def booking(self, booking_id: int) -> dict[str, Any]:
        response = self.http.get(f"/api/bookings/{booking_id}", headers=self.admin)
        # what the service answered, when it is not the booking: a KeyError on its body says nothing
        assert response.status_code == 200, (
            f"GET /api/bookings/{booking_id}: {response.status_code} {response.text[:500]}"
        )
        return response.json()

    def notification(self, booking_id: int) -> dict[str, Any]:
        return self.booking(booking_id)["notification"]

    def wait_status(self, booking_id: int, *statuses: str, timeout: float = 10.0) -> dict[str, Any]:
        return wait_until(
            lambda: (n := self.notification(booking_id))["status"] in statuses and n,
            timeout,
            f"booking {booking_id} to reach {statuses}",
        )

    def metrics(self, window: float = 3600) -> dict[str, Any]:
        return self.http.get("/api/whatsapp/metrics", params={"window": window}).json()

    def log_events(self) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self.http.is_closed:
            return
        self.http.close()
        self.server.stop()


def booking_body(n: int = 1, customer: str | None = None, phone: str = PHONE, **fields: Any) -> dict[str, Any]:
    body = {
        "customer_id": customer or f"cust-{n}",
        "parent_name": "Asha Rao",
        "child_name": "Ravi",
        "phone": phone,
        "event_name": "Junior Art Camp",
        "venue": "Hall A, Bengaluru",
        "event_date": "2026-12-20",
        "booking_ref": f"NB-{n:06d}",
        "amount": "1500",
        "payment_method": "UPI",
    }
    body.update(fields)
    return body


def serve_process(port: int, folder: Path, *options: str, db: str | None = None) -> subprocess.Popen[bytes]:
    """``rollout serve`` as a process of its own on ``port``: its env file ``folder/service.env``, its
    database ``db`` (default ``folder/service.db``), its event log ``folder/events.log``, and
    ``options`` (``--replica-id r1``); stderr piped, for a test that kills it and reads what it said."""
    return subprocess.Popen(
        [
            *COMMAND,
            "serve",
            "--port",
            str(port),
            "--env-file",
            str(folder / "service.env"),
            "--db",
            db or str(folder / "service.db"),
            *options,
            "--log-file",
            str(folder / "events.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
