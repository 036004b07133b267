"""Start the sandbox and the service as real processes on free loopback ports (benchmarks only)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from rollout.util.envfile import write_env_file
from rollout.util.serving import free_port

SANDBOX_TOKEN = "bench-sandbox-token"
ADMIN_TOKEN = "bench-admin-token"


def _wait(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


class Proc:
    def __init__(self, args: list[str], url: str, log: Path) -> None:
        self.url = url
        self._log = open(log, "w")  # noqa: SIM115 - the process writes to it until stop() closes it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rollout", *args],
            stdout=self._log,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        _wait(url)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def start_sandbox(folder: Path) -> Proc:
    port = free_port()
    return Proc(
        ["sandbox", "--port", str(port), "--token", SANDBOX_TOKEN], f"http://127.0.0.1:{port}", folder / "sandbox.log"
    )


def start_service(
    folder: Path,
    sandbox_url: str,
    db: str | None = None,
    replica_id: str | None = None,
    args: list[str] | None = None,
    env_file: Path | None = None,
    **env: str,
) -> tuple[Proc, Path]:
    """A ``rollout serve`` process on a free port; ``db`` defaults to a SQLite file in ``folder``;
    ``args`` are more of its options; ``env_file`` (one that several services share) is written only
    when it does not exist yet."""
    folder.mkdir(parents=True, exist_ok=True)
    env_file = env_file or folder / "service.env"
    values = {
        "WHATSAPP_NOTIFICATIONS_ENABLED": "true",
        "ZAPTRA_API_URL": f"{sandbox_url}/api/wpbox",
        "ZAPTRA_API_TOKEN": SANDBOX_TOKEN,
        "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
        **env,
    }
    if not env_file.exists():
        write_env_file(env_file, values)
    port = free_port()
    extra = (["--replica-id", replica_id] if replica_id else []) + (args or [])
    proc = Proc(
        [
            "serve",
            "--port",
            str(port),
            "--env-file",
            str(env_file),
            "--db",
            db or str(folder / "service.db"),
            "--log-file",
            str(folder / "events.log"),
            *extra,
        ],
        f"http://127.0.0.1:{port}",
        folder / "service.log",
    )
    return proc, env_file


def sandbox_client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"}, timeout=30)


def wait_for_messages(sandbox: httpx.Client, count: int, timeout: float) -> list[dict]:
    """The sandbox's received messages once there are ``count`` of them (or ``timeout`` has passed)."""
    deadline = time.monotonic() + timeout
    while sandbox.get("/sandbox/stats").json()["messages"] < count and time.monotonic() < deadline:
        time.sleep(0.25)
    return sandbox.get("/sandbox/messages").json()["messages"]
