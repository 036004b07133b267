"""A real Unleash server for tests: ``unleash-server`` from npm (``scripts/install-unleash``, which
scripts/install-test-deps runs) on a fresh database of the session's PostgreSQL, a free loopback port, an admin token
given at first start (``initApiTokens`` is read only on an empty database), stopped at the end."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from rollout.util.serving import free_port
from tests.support.postgres import Postgres
from tests.support.requirements_servers import unavailable, unleash_home, unleash_installed

HERE = Path(__file__).parent
HOME = unleash_home()


class Unleash:
    """One server; :meth:`client_token` makes an environment's client token, :meth:`stop` and
    :meth:`start` take it away and bring it back on the same port and database."""

    def __init__(self, postgres: Postgres, folder: Path) -> None:
        if unleash_installed() is None:
            unavailable("unleash", str(HOME))
        self.folder = folder
        self.database = postgres.database()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_token = f"*:*.{uuid.uuid4().hex}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._tokens: dict[str, str] = {}
        self.start()
        self.admin = httpx.Client(base_url=self.url, headers={"Authorization": self.admin_token}, timeout=10)

    def start(self, timeout: float = 90.0) -> None:
        log = open(self.folder / "unleash.log", "ab")  # noqa: SIM115 - the process holds it
        self.proc = subprocess.Popen(
            ["node", str(HERE / "start.js")],
            env={
                **os.environ,
                "NODE_PATH": str(HOME / "node_modules"),
                "UNLEASH_DB_URL": self.database,
                "UNLEASH_PORT": str(self.port),
                "UNLEASH_ADMIN_TOKEN": self.admin_token,
                "NODE_NO_WARNINGS": "1",
                # its webhook integration may call services on loopback (the flag hint's tests)
                "UNLEASH_ALLOW_LIST_INTEGRATION": "127.0.0.1",
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unleash-server exited: {(self.folder / 'unleash.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).json().get("health") == "GOOD":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        self.stop()  # a server that never answered is not left running after the failed fixture
        raise RuntimeError(f"unleash-server did not answer within {timeout:g}s")

    def stop(self) -> None:
        """Stop the server at once (its clients see connections refused)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def client_token(self, environment: str = "production") -> str:
        """A client token for ``environment`` (what a service reads its flags with)."""
        if environment not in self._tokens:
            answer = self.admin.post(
                "/api/admin/api-tokens",
                json={
                    "tokenName": f"svc-{environment}",
                    "type": "client",
                    "environment": environment,
                    "projects": ["*"],
                },
            )
            answer.raise_for_status()
            self._tokens[environment] = answer.json()["secret"]
        return self._tokens[environment]

    def feature(self, name: str, project: str = "default") -> dict:
        """The feature as the Admin API answers (404: an empty dict)."""
        answer = self.admin.get(f"/api/admin/projects/{project}/features/{name}")
        return {} if answer.status_code == 404 else answer.json()

    def environment_of(self, name: str, environment: str = "production") -> dict:
        """The feature's environment block: ``enabled`` and its ``strategies``."""
        return next(e for e in self.feature(name)["environments"] if e["name"] == environment)

    def close(self) -> None:
        self.admin.close()
        self.stop()
