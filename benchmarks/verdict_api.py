"""How long the agent's verdict API takes to answer Argo Rollouts or Flagger.

One agent app on 127.0.0.1 serving a project whose gate set reads a JSON stats endpoint (an HTTP
provider, as the contract tests do); ``--calls`` sequential GETs of the Argo path, then as many
Flagger POSTs. Printed: the answer time as the caller sees it (p50, p90, p99, max) and the part of it
spent measuring and judging (the answer's ``duration_s``). Each call builds the environment's
providers and clients anew (a read-only run context), which is most of the time; the callers'
default timeouts are 10 s.

Usage: python benchmarks/verdict_api.py [--calls 200]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from fastapi import FastAPI

from rollout.agent.config import AgentConfig, ProjectEntry
from rollout.agent.controller import Agent
from rollout.agent.log import AgentLog
from rollout.agent.server import create_agent_app
from rollout.util.serving import ServerThread

TOKEN = "benchmark-agent-token-0001"

PLAYBOOK = """\
version: 1
name: bench
target: {kind: http, health: {url: /healthz, expect: {status: 200}}}
flag:
  backend: http
  variable: FEATURE_ON
  percent_variable: FEATURE_SHARE
  url: /admin/flag
  body: {"on": $enabled, "share": $percent}
providers:
  stats: {kind: http, timeout: 2s}
gates:
  guard:
    window: 5m
    min_samples: 20
    metrics:
      - {metric: errors, provider: stats, kind: rate, target: 1%, alert: 5%,
         query: {url: "/stats?window=$window", value: rate, samples: n}}
      - {metric: timeouts, provider: stats, kind: rate, target: 1%, alert: 5%,
         query: {url: "/stats?window=$window", value: rate, samples: n}}
phases:
  - name: production
    environment: production
    steps:
      - {kind: configure, set: {FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - {kind: ramp, percentages: [10, 100], hold: 1m, gate: guard}
"""


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p = statistics.quantiles(ordered, n=100, method="inclusive")
    return f"p50 {p[49] * 1000:.1f} ms, p90 {p[89] * 1000:.1f} ms, p99 {p[98] * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()

    stats = FastAPI()

    @stats.get("/stats")
    async def answer() -> dict[str, float]:
        return {"rate": 0.0, "n": 500}

    with ServerThread(stats) as stats_server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "environments").mkdir()
        (folder / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {stats_server.url}\n")
        (folder / "bench.yaml").write_text(PLAYBOOK)
        config = AgentConfig(
            name="bench",
            state=str(folder / "state.db"),
            listen="127.0.0.1:0",
            projects=[ProjectEntry(playbook=folder / "bench.yaml", environments=folder / "environments")],
        )
        agent = Agent(config, AgentLog("bench", stream=io.StringIO()))
        app = create_agent_app(agent, {"ROLLOUT_AGENT_TOKEN": TOKEN})
        agent.open()
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            flagger_body = json.dumps(
                {"name": "app", "namespace": "test", "phase": "Progressing", "metadata": {"token": TOKEN}}
            )
            for name, call in (
                ("argo GET", lambda: http.get("/v1/verdict/bench/production/guard", headers=headers)),
                ("flagger POST", lambda: http.post("/v1/flagger/bench/production/guard", content=flagger_body)),
            ):
                call()  # warm
                answered, measured = [], []
                for _ in range(args.calls):
                    started = time.perf_counter()
                    response = call()
                    answered.append(time.perf_counter() - started)
                    assert response.status_code == 200 and response.json()["verdict"] == "pass", response.text
                    measured.append(response.json()["duration_s"])
                print(f"{name}: {args.calls} calls, 2 metrics; answered in {percentiles(answered)}")
                print(f"{'':{len(name)}}  of which measuring and judging: {percentiles(measured)}")
        agent.stop()


if __name__ == "__main__":
    main()
