"""The agent's HTTP face: ``/healthz`` for a supervisor's probe, ``/metrics`` for Prometheus, and
the verdict API for Argo Rollouts and Flagger (:mod:`rollout.agent.verdicts`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from rollout.agent import verdicts
from rollout.agent.controller import Agent

#: lateness buckets (seconds): an evaluation due at t that started at t + lateness
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _AgentCollector(Collector):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Any]:
        figures = self.agent.figures
        held = GaugeMetricFamily(
            "rollout_agent_environments", "Environments this agent holds, by mode", labels=["mode"]
        )
        for mode, n in self.agent.health()["by_mode"].items():
            held.add_metric([mode], n)
        yield held
        yield CounterMetricFamily("rollout_agent_looks", "Looks (evaluations or writes) made", value=figures.looks)
        yield CounterMetricFamily("rollout_agent_look_errors", "Looks that failed", value=figures.look_errors)
        yield CounterMetricFamily("rollout_agent_takeovers", "Leases taken", value=figures.takeovers)
        yield CounterMetricFamily(
            "rollout_agent_leases_lost", "Leases lost to another agent", value=figures.leases_lost
        )
        samples = sorted(figures.lateness)
        buckets = [(str(b), sum(1 for x in samples if x <= b)) for b in LATENESS_BUCKETS]
        buckets.append(("+Inf", len(samples)))
        yield HistogramMetricFamily(
            "rollout_agent_look_lateness_seconds",
            "How late a look started after it was due (the last 10,000)",
            buckets=buckets,
            sum_value=sum(samples),
        )


def create_agent_app(agent: Agent, environ: Mapping[str, str] | None = None) -> FastAPI:
    """The agent's own endpoints; the dashboard may be mounted beside them (``rollout agent --dashboard``).
    Raises :class:`~rollout.util.errors.ConfigError` when the verdict API would be open to other
    machines without a token (``environ``: where ``ROLLOUT_AGENT_TOKEN`` is read, default the process's)."""
    token = verdicts.agent_token(agent.config.host_port[0], environ)
    app = FastAPI(title="rollout agent", docs_url=None, redoc_url=None, openapi_url=None)
    registry = CollectorRegistry()
    registry.register(_AgentCollector(agent))
    verdicts.mount(app, agent, token, registry)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        health = agent.health()
        return JSONResponse(health, 200 if health["status"] == "ok" else 503)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
