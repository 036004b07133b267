"""A real agent serving a project whose gates read the team service's ``/stats`` over HTTP, its app
on loopback: what the verdict API's tests and ``benchmarks/verdict_api.py`` call."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import httpx

from rollout.agent.config import AgentConfig, ProjectEntry
from rollout.agent.controller import Agent
from rollout.agent.log import AgentLog
from rollout.agent.server import create_agent_app
from rollout.util.serving import ServerThread
from tests.support.flagservice import TOKEN as FLAG_TOKEN
from tests.support.flagservice import FlagService

AGENT_TOKEN = "verdict-api-token-5e1f0c2b"
STATS_SECRET = "stats-reader-secret-93ad7"

PLAYBOOK = """\
version: 1
name: checkout
target:
  kind: http
  health: {url: /healthz, expect: {status: 200}}
flag:
  backend: http
  variable: FEATURE_ON
  percent_variable: FEATURE_SHARE
  url: /admin/flag
  token: ${FLAG_TOKEN}
  timeout: 1s
  body: {"on": $enabled, "share": $percent}
  read: {url: /admin/flag, enabled: feature.enabled, percent: feature.percent}
providers:
  stats: {kind: http, token: "${STATS_TOKEN}", timeout: 2s}
gates:
  guard:
    window: 10m
    min_samples: 20
    metrics:
      - {metric: errors, provider: stats, kind: rate, target: 1%, alert: 5%,
         query: {url: "/stats?window=$window&percent=$percent", value: rate, samples: n}}
  quick:
    window: 30s
    min_samples: 1
    metrics:
      - {metric: new_path_errors, provider: stats, kind: rate, target: 1%, alert: 5%,
         query: {url: "/stats?window=$window", value: bad, samples: n}}
phases:
  - name: staging
    environment: staging
    steps:
      - {kind: configure, set: {FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - {kind: gate, gate: quick}
  - name: production
    environment: production
    steps:
      - {kind: configure, set: {FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - {kind: ramp, percentages: [10, 100], hold: 1m, gate: guard}
  - name: dark
    environment: dark
    steps:
      - {kind: configure, set: {FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - {kind: gate, gate: quick}
"""


class VerdictAgent:
    """An agent serving the project, its app on loopback, its log lines kept."""

    def __init__(self, folder: Path, svc: FlagService, environ: dict[str, str]) -> None:
        (folder / "environments").mkdir(parents=True)
        for env in ("staging", "production"):  # "dark" has no environment file: it cannot be evaluated
            (folder / "environments" / f"{env}.yaml").write_text(f"name: {env}\nservice_url: {svc.url}\n")
        (folder / "checkout.yaml").write_text(PLAYBOOK)
        (folder / "secrets.env").write_text(f"FLAG_TOKEN={FLAG_TOKEN}\nSTATS_TOKEN={STATS_SECRET}\n")
        config = AgentConfig(
            name="verdict-agent",
            state=str(folder / "state.db"),
            listen="127.0.0.1:0",
            projects=[
                ProjectEntry(
                    playbook=folder / "checkout.yaml",
                    environments=folder / "environments",
                    secrets_file=folder / "secrets.env",
                )
            ],
        )
        self.logged = io.StringIO()
        self.agent = Agent(config, AgentLog(config.name, json_lines=True, stream=self.logged))
        app = create_agent_app(self.agent, environ)
        self.agent.open()
        self._thread = threading.Thread(target=self.agent.run, daemon=True)
        self._thread.start()
        self.server = ServerThread(app).start()
        self.http = httpx.Client(base_url=self.server.url, timeout=10)
        self.store = self.agent.served[0].state

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in map(json.loads, self.logged.getvalue().splitlines()) if e["event"] == kind]

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        self.agent.stop()
        self._thread.join(30)
