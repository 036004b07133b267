"""A local stack: the sandbox and one service per environment, as real processes on free ports.

Used by ``rollout demo`` and the benchmarks. Everything listens on 127.0.0.1 and is stopped by
:meth:`Stack.stop` (also on Ctrl-C, through the context manager).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rollout.util.envfile import write_env_file
from rollout.util.errors import RolloutError
from rollout.util.serving import free_port


@dataclass
class Proc:
    name: str
    url: str
    popen: subprocess.Popen
    log: Path


@dataclass
class Stack:
    """Processes of one local stack; see the module docstring."""

    folder: Path
    environments: tuple[str, ...] = ("dev", "staging", "production")
    sandbox_token: str = field(default_factory=lambda: "sbx-" + secrets.token_urlsafe(16))
    admin_token: str = field(default_factory=lambda: "adm-" + secrets.token_urlsafe(16))
    procs: dict[str, Proc] = field(default_factory=dict)

    def env_file(self, env: str) -> Path:
        return self.folder / env / "service.env"

    def url(self, name: str) -> str:
        return self.procs[name].url

    def _spawn(self, name: str, args: list[str], health_path: str) -> Proc:
        port = free_port()
        log = self.folder / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        stream = open(log, "ab")  # noqa: SIM115 - the process writes to it until the stack stops
        popen = subprocess.Popen(
            [sys.executable, "-m", "rollout", *args, "--port", str(port)],
            stdout=stream,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
        stream.close()
        proc = Proc(name, f"http://127.0.0.1:{port}", popen, log)
        self.procs[name] = proc
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(proc.url + health_path, timeout=1)
                return proc
            except httpx.HTTPError:
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise RolloutError(f"{name} did not start; see {log}") from None
                time.sleep(0.05)

    def start(self, service_env: dict[str, str] | None = None) -> Stack:
        """Start the sandbox, then each environment's service with the flag off."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._spawn("sandbox", ["sandbox", "--token", self.sandbox_token], "/")
        for env in self.environments:
            values = {
                "WHATSAPP_NOTIFICATIONS_ENABLED": "false",
                "WHATSAPP_ROLLOUT_PERCENT": "0",
                "ZAPTRA_API_URL": self.provider_url,
                "ZAPTRA_API_TOKEN": self.sandbox_token,
                "ROLLOUT_ADMIN_TOKEN": self.admin_token,
                **(service_env or {}),
            }
            write_env_file(self.env_file(env), values)
            self._spawn(
                env,
                [
                    "serve",
                    "--env-file",
                    str(self.env_file(env)),
                    "--db",
                    str(self.folder / env / "service.db"),
                    "--log-file",
                    str(self.folder / "logs" / f"{env}-events.log"),
                ],
                "/api/whatsapp/metrics?window=1",
            )
        return self

    @property
    def provider_url(self) -> str:
        return self.procs["sandbox"].url + "/api/wpbox"

    def faults(self, **changes: float) -> None:
        """Change the sandbox's faults (``error_rate=1.0``: the provider turns bad)."""
        httpx.patch(
            f"{self.url('sandbox')}/sandbox/faults",
            json=changes,
            headers={"Authorization": f"Bearer {self.sandbox_token}"},
            timeout=5,
        )

    def engine_environ(self) -> dict[str, str]:
        """The variables the shipped environments/*.yaml read to find this stack."""
        environ = {
            "ROLLOUT_SANDBOX_URL": self.procs["sandbox"].url,
            "ZAPTRA_SANDBOX_TOKEN": self.sandbox_token,
            "ZAPTRA_API_TOKEN": self.sandbox_token,
            "ZAPTRA_API_URL": self.provider_url,
            "ROLLOUT_ADMIN_TOKEN": self.admin_token,
        }
        for env in self.environments:
            environ[f"ROLLOUT_{env.upper()}_URL"] = self.procs[env].url
            environ[f"ROLLOUT_{env.upper()}_ENV_FILE"] = str(self.env_file(env))
        return environ

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.popen.poll() is None:
                proc.popen.terminate()
        for proc in self.procs.values():
            try:
                proc.popen.wait(20)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(5)
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
