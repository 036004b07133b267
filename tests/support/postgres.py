"""A real PostgreSQL server for tests: ``initdb`` and ``pg_ctl`` in a temporary folder, a free port on
127.0.0.1, trust authentication, stopped at the end. As root (CI), the server runs as the
``postgres`` user the Debian package creates, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from rollout.util.serving import free_port
from tests.support.requirements_servers import postgres_bindir, unavailable


class Postgres:
    """One cluster; :meth:`database` makes a fresh database and returns its URL."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            unavailable("postgresql")
        self.bindir, self.port = bindir, free_port()
        # a folder of its own directly in /tmp: pytest's folders are private to root, and the server is not root
        self.folder = folder = Path(tempfile.mkdtemp(prefix="rollout-pg-"))
        self.data = folder / "pgdata"
        self._as = []
        if os.geteuid() == 0:
            shutil.chown(folder, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(folder / "postgres.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {folder} -c fsync=off",
            "start",
        )
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bindir / program), *args], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stdout[-1000:]} {done.stderr[-1000:]}")

    def database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        """Stop the server at once (clients see their connections dropped)."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
