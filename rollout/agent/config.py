"""What an agent serves and how: a small YAML file, or the command's own options for one project.

.. code-block:: yaml

    name: agent-a                 # default: host-pid
    state: postgresql://...       # the projects' state unless a project names its own
    listen: 127.0.0.1:8710        # /healthz, /metrics, the verdict API (and the dashboard)
    lease_ttl: 5s
    workers: 16
    projects:
      - playbook: playbooks/whatsapp.yaml
        environments: environments
        secrets_file: /run/secrets/rollout.env

Every field can also come from the environment (``ROLLOUT_AGENT_NAME``, ``ROLLOUT_STATE``,
``ROLLOUT_AGENT_LISTEN``, ``ROLLOUT_AGENT_LEASE_TTL``, ``ROLLOUT_AGENT_WORKERS``); secrets stay
references (``${NAME}``) resolved from the process environment or the secrets file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rollout.engine.project import Project
from rollout.util.errors import ConfigError
from rollout.util.units import Duration
from rollout.util.yamlfile import load_model


class ProjectEntry(BaseModel):
    """One project an agent serves: a playbook and its environments folder."""

    model_config = ConfigDict(extra="forbid")

    playbook: Path
    environments: Path = Path("environments")
    #: a SQLite file or postgresql://...; default: the agent's ``state``
    state: str | None = None
    secrets_file: Path | None = None
    repo: Path = Path(".")


class AgentConfig(BaseModel):
    """An agent's settings (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}", min_length=1, max_length=100)
    state: str = ".rollout/state.db"
    listen: str = "127.0.0.1:8710"
    #: how long a lease lives without renewal: a frozen or dead agent's environments are taken over
    #: after this (renewed every third of it)
    lease_ttl: Duration = Field(5.0, ge=1.0, le=300.0)
    #: environments evaluated at the same time (a hanging provider holds one worker, never the others)
    workers: int = Field(16, ge=1, le=256)
    #: seconds a SIGTERM waits for evaluations under way before the leases are given up anyway
    stop_grace: Duration = Field(30.0, ge=0, le=600)
    projects: list[ProjectEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _listen(self) -> AgentConfig:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen: expected HOST:PORT, got {self.listen!r}")
        return self

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)

    def project(self, entry: ProjectEntry) -> Project:
        """``entry`` as the engine's :class:`Project` (its state, or the agent's)."""
        state = entry.state or self.state
        url = state if state.startswith(("postgresql://", "postgres://")) else None
        return Project(
            entry.playbook,
            entry.environments,
            Path(".rollout/state.db") if url else Path(state),
            entry.secrets_file,
            entry.repo,
            state_url=url,
        )


#: the environment variables an agent reads, by field
ENVIRONMENT = {
    "name": "ROLLOUT_AGENT_NAME",
    "state": "ROLLOUT_STATE",
    "listen": "ROLLOUT_AGENT_LISTEN",
    "lease_ttl": "ROLLOUT_AGENT_LEASE_TTL",
    "workers": "ROLLOUT_AGENT_WORKERS",
}


def load_config(
    path: Path | None, one_project: ProjectEntry | None, environ: Mapping[str, str] | None = None, **given: object
) -> AgentConfig:
    """The agent's settings: the file at ``path`` (or ``one_project`` when there is none), then the
    environment variables, then what the command line ``given`` (None: not given)."""
    environ = os.environ if environ is None else environ
    if path is not None:
        base = load_model(path, AgentConfig, ConfigError, environ).model_dump(exclude_unset=True)
    elif one_project is not None:
        base = {"projects": [one_project.model_dump()]}
    else:
        raise ConfigError("rollout agent: give --config FILE, or --playbook and --environments")
    for field, variable in ENVIRONMENT.items():
        if environ.get(variable) and field not in base:
            base[field] = environ[variable]
    base.update({k: v for k, v in given.items() if v is not None})
    try:
        return AgentConfig.model_validate(base)
    except ValueError as exc:
        where = f"{path}" if path is not None else "rollout agent"
        raise ConfigError(f"{where}: {exc}".replace("\n", "; ")) from None
