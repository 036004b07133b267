"""Always-on agents under test: real ``rollout agent`` processes on free ports, their JSON logs, and
the CLI run as a user runs it against the same state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from rollout.engine import leases
from rollout.engine.project import Project
from rollout.util.serving import free_port
from tests.support import inprocess
from tests.support.flagservice import project_args
from tests.support.harness import wait_until


def state_of(project: Project) -> str:
    return project.state_url or str(project.state_path)


class AgentProcess:
    """``rollout agent`` serving ``project`` (or the projects of ``config``) as ``name``."""

    def __init__(
        self,
        folder: Path,
        name: str,
        project: Project | None = None,
        config: Path | None = None,
        ttl: str = "3s",
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.folder = name, folder
        self.port = free_port()
        args = ["--config", str(config)] if config is not None else []
        if project is not None:
            args += [
                "--playbook",
                str(project.playbook_path),
                "--environments",
                str(project.environments_dir),
                "--state",
                state_of(project),
            ]
        self.log_path = folder / f"agent-{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - open for the process's life
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rollout",
                "agent",
                *args,
                "--name",
                name,
                "--listen",
                f"127.0.0.1:{self.port}",
                "--lease-ttl",
                ttl,
                "--log-format",
                "json",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=folder,
        )
        wait_until(self._healthy, timeout=30, what=f"agent {name} to answer /healthz")

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(
                f"agent {self.name} exited {self.proc.returncode}: {self.log_path.read_text()[-2000:]}"
            )
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The JSON events it logged (of ``kind``)."""
        found = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if kind is None or event.get("event") == kind:
                found.append(event)
        return found

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, and wait for it to end (its exit code)."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def owner(project: Project, environment: str) -> str | None:
    """Who holds a fresh lease on ``environment`` now."""
    state = project.state()
    try:
        held = leases.holder(state, environment, time.time())
        return held.owner if held else None
    finally:
        state.close()


def audit(project: Project, environment: str) -> list[dict[str, Any]]:
    state = project.state()
    try:
        return state.audit_log(environment, limit=10_000)
    finally:
        state.close()


def cli(
    project: Project, *args: str, env: dict[str, str] | None = None, timeout: float = 120, popen: bool = False
) -> Any:
    """``rollout ARGS`` on ``project``'s files as a user runs it (no terminal); ``popen``: started, not waited."""
    argv = project_args(project, *args, state=state_of(project))
    environ, cwd = {**os.environ, **(env or {})}, project.playbook_path.parent
    if popen:
        return subprocess.Popen(
            [*inprocess.COMMAND, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
            env=environ,
            cwd=cwd,
        )
    return inprocess.run(argv, env=environ, cwd=cwd, timeout=timeout)


class Following:
    """A terminal's ``rollout advance`` that follows an agent's run: its lines as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def said(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        wait_until(lambda: text in self.said, timeout=timeout, what=f"the terminal to say {text!r}")

    def end(self, timeout: float = 60) -> int:
        """Wait for it to exit; its exit code (its whole output in :attr:`said`)."""
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code
