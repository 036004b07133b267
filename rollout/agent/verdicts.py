"""The verdict API: rollout's judgement of a gate set for tools that shift traffic themselves.

Argo Rollouts' ``web`` metric provider and Flagger's webhooks call an HTTP endpoint during their own
canaries. The agent answers with the verdict of a named gate set of one of its projects, for one
environment (that environment's providers, its secrets by reference), measured now over the gate's
window:

- ``GET|POST|PUT /v1/verdict/{project}/{environment}/{gate}``: for Argo Rollouts (and anyone who
  reads JSON). Every verdict is a 200 whose ``verdict`` field is ``pass``, ``hold`` or ``fail``; an
  AnalysisTemplate reads it with ``jsonPath: "{$.verdict}"``, ``successCondition: result == "pass"``
  and ``failureCondition: result == "fail"``, so a hold matches neither: Inconclusive.
- ``POST /v1/flagger/{project}/{environment}/{gate}``: for a Flagger webhook (its payload
  ``{name, namespace, phase, checksum, metadata}``). Flagger reads the status: 200 for a pass
  advances; a fail (412) and a hold (503) are not 200-202, so the canary does not advance and the
  check counts as failed (Flagger has no "inconclusive").

``?percent=N`` tells the providers the canary's share (``$percent`` in queries, compare metrics).
Each call is judged on its own: the callers count failures themselves (Argo's ``failureLimit``,
Flagger's ``threshold``). Read-only: nothing is written to the flag or to the environment's state;
each verdict served is one line in the agent's log and a count in ``/metrics``.

A bad request gets ``{"error": "one line"}``: 400 (malformed body or parameter), 401 (token missing
or wrong), 404 (unknown project, environment or gate), 405 (method), 409 (two projects with one
name), 500 (the environment cannot be evaluated: a secret reference not set, a broken env file).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from rollout.agent.controller import Agent, Served
from rollout.console import QuietReporter
from rollout.engine.observe import measure
from rollout.engine.project import open_context
from rollout.gates import FAIL, HOLD, PASS, Verdict
from rollout.playbook.model import GateSet
from rollout.util.errors import ConfigError, RolloutError

ARGO_PATH = "/v1/verdict/{project}/{environment}/{gate}"
FLAGGER_PATH = "/v1/flagger/{project}/{environment}/{gate}"
#: the methods Argo Rollouts' web provider may use (``method: GET|POST|PUT``, GET by default)
ARGO_METHODS = ("GET", "POST", "PUT")
#: Flagger advances on 200-202; anything else halts the canary and counts a failed check
FLAGGER_STATUS = {PASS: 200, HOLD: 503, FAIL: 412}
TOKEN_VARIABLE = "ROLLOUT_AGENT_TOKEN"
MIN_TOKEN_LENGTH = 16
#: the fields of each metric an answer carries
METRIC_FIELDS = (
    "metric",
    "verdict",
    "value",
    "target",
    "alert",
    "samples",
    "min_samples",
    "window_seconds",
    "interval",
    "role",
    "provider",
    "reason",
)


class Refused(HTTPException):
    """A request the verdict API answers with ``{"error": detail}`` and ``status_code``."""


def agent_token(host: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The verdict API's bearer token (``$ROLLOUT_AGENT_TOKEN``), or None on a loopback address
    without one (only this machine's processes can call it there). Raises :class:`ConfigError` for
    a token shorter than 16 characters, or for none on an address other machines reach."""
    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_VARIABLE) or None
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(f"{TOKEN_VARIABLE} must be at least {MIN_TOKEN_LENGTH} characters")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"rollout agent: listening on {host} (not loopback) needs a token for the verdict API: "
            f"set {TOKEN_VARIABLE} (at least {MIN_TOKEN_LENGTH} characters)"
        )
    return token


def is_loopback(host: str) -> bool:
    """Does ``host`` (an address or ``localhost``) reach only this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class FlaggerPayload(BaseModel):
    """What Flagger POSTs to a webhook (``CanaryWebhookPayload``); later fields are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    name: str
    namespace: str
    phase: str
    #: a hash of the canary's spec and tracked configs (Flagger 1.x; older versions leave it out)
    checksum: str = ""
    metadata: dict[str, str] = {}


class _Served(Collector):
    """``rollout_agent_verdicts_served``: verdicts answered, by caller and answer."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def add(self, caller: str, answer: str) -> None:
        with self._lock:
            self.counts[(caller, answer)] += 1

    def collect(self) -> Iterator[Any]:
        family = CounterMetricFamily(
            "rollout_agent_verdicts_served",
            "Verdicts answered to Argo Rollouts and Flagger, by answer (pass, hold, fail, refused)",
            labels=["caller", "answer"],
        )
        with self._lock:
            for (caller, answer), n in sorted(self.counts.items()):
                family.add_metric([caller, answer], n)
        yield family


def mount(app: FastAPI, agent: Agent, token: str | None, registry: CollectorRegistry) -> None:
    """Add the verdict API to ``app`` (see the module docstring)."""
    served_counts = _Served()
    registry.register(served_counts)

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Refused)
        served_counts.add("flagger" if request.url.path.startswith("/v1/flagger/") else "argo", "refused")
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    app.add_exception_handler(Refused, refused)

    @app.api_route(ARGO_PATH, methods=list(ARGO_METHODS))
    async def argo(request: Request, project: str, environment: str, gate: str) -> JSONResponse:
        _authorize(request, token, None)
        body = await request.body()
        if body.strip():  # a body is the template's own (``body``/``jsonBody``): it must at least be JSON
            _json(body)
        served = _served(agent, project, environment)
        body_out, verdict = await run_in_threadpool(_judge, agent, served, environment, gate, _percent(request))
        _say(agent, served, "argo", body_out, verdict, None)
        served_counts.add("argo", verdict.verdict)
        return JSONResponse(body_out, 200)

    @app.api_route(FLAGGER_PATH, methods=["GET", "PUT", "PATCH", "DELETE"])
    async def flagger_wrong_method(request: Request) -> JSONResponse:
        raise Refused(405, f"{request.method} is not how Flagger calls a webhook: POST its payload", {"Allow": "POST"})

    @app.post(FLAGGER_PATH)
    async def flagger(request: Request, project: str, environment: str, gate: str) -> JSONResponse:
        raw = await request.body()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        given = data.get("metadata") if isinstance(data, dict) else None
        _authorize(request, token, given.get("token") if isinstance(given, dict) else None)
        if data is None:
            raise Refused(400, "the body is not JSON: expected Flagger's payload {name, namespace, phase, metadata}")
        try:
            payload = FlaggerPayload.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise Refused(400, f"not Flagger's webhook payload: {problems}") from None
        served = _served(agent, project, environment)
        body_out, verdict = await run_in_threadpool(_judge, agent, served, environment, gate, _percent(request))
        _say(agent, served, "flagger", body_out, verdict, payload)
        served_counts.add("flagger", verdict.verdict)
        return JSONResponse(body_out, FLAGGER_STATUS[verdict.verdict])


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None


def _authorize(request: Request, token: str | None, from_payload: str | None) -> None:
    """The bearer token in ``Authorization``, or (Flagger, which sends no headers of a user's
    choosing) in the payload's ``metadata.token``."""
    if token is None:
        return
    header = request.headers.get("authorization", "")
    given = header[7:].strip() if header[:7].lower() == "bearer " else from_payload
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise Refused(
            401,
            "missing or wrong token: send 'Authorization: Bearer <ROLLOUT_AGENT_TOKEN>' (Flagger: metadata.token)",
            {"WWW-Authenticate": "Bearer"},
        )


def _percent(request: Request) -> int | None:
    raw = request.query_params.get("percent")
    if raw is None:
        return None
    if not raw.isdigit() or not 0 <= int(raw) <= 100:
        raise Refused(400, f"percent: expected a whole number from 0 to 100, got {raw!r}")
    return int(raw)


def _served(agent: Agent, project: str, environment: str) -> Served:
    matches = [s for s in agent.served if s.playbook.name == project]
    if not matches:
        known = ", ".join(sorted(s.playbook.name for s in agent.served)) or "none"
        raise Refused(404, f"no project named {project!r} (this agent serves: {known})")
    if len(matches) > 1:
        files = ", ".join(str(s.project.playbook_path) for s in matches)
        raise Refused(409, f"{len(matches)} projects are named {project!r} ({files}): give each playbook its own name")
    served = matches[0]
    if environment not in served.environments:
        known = ", ".join(served.environments)
        raise Refused(404, f"project {project!r} has no environment {environment!r} (its environments: {known})")
    return served


def _judge(agent: Agent, served: Served, environment: str, gate: str, percent: int | None) -> tuple[dict, Verdict]:
    """Measure ``gate`` in ``environment`` now, through a read-only run context."""
    project = served.project
    try:
        with open_context(
            project, environment, agent.clock, QuietReporter(), read_only=True, state=served.state, commit=None
        ) as ctx:
            gates = ctx.playbook.gates.get(gate)
            if gates is None:
                known = ", ".join(ctx.playbook.gates)
                raise Refused(404, f"project {served.playbook.name!r} has no gate set {gate!r} (its gates: {known})")
            verdict = measure(ctx, gates, percent=percent)
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken environment is the caller's error answer, never a traceback
        what = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
        said = project.redactor.text(f"{environment} cannot be evaluated: {what}")
        agent.log.event("error", f"verdict API: {said}", environment, project.redactor)
        raise Refused(500, said) from None
    body = answer(served.playbook.name, environment, gate, gates, verdict, percent, agent.clock.time())
    return project.redactor.value(body), verdict


def answer(
    project: str, environment: str, gate: str, gates: GateSet, verdict: Verdict, percent: int | None, now: float
) -> dict:
    """The JSON both callers get: the verdict, why, and each metric's reading."""
    return {
        "verdict": verdict.verdict,
        "summary": verdict.summary,
        "stop": verdict.stop,
        "project": project,
        "environment": environment,
        "gate": gate,
        "window_s": gates.window,
        "percent": percent,
        "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "duration_s": None if verdict.duration_s is None else round(verdict.duration_s, 4),
        "metrics": [{k: m.as_dict()[k] for k in METRIC_FIELDS} for m in verdict.metrics],
    }


def _say(
    agent: Agent, served: Served, caller: str, body: dict, verdict: Verdict, payload: FlaggerPayload | None
) -> None:
    """The audit of a verdict served: one log line (the environment's state is not written)."""
    canary = {} if payload is None else {"canary": f"{payload.namespace}/{payload.name}", "checksum": payload.checksum}
    agent.log.event(
        "verdict_served",
        f"{caller}: {verdict.verdict.upper()} {body['gate']} of {body['project']}: {verdict.summary}",
        body["environment"],
        served.project.redactor,
        caller=caller,
        project=body["project"],
        gate=body["gate"],
        verdict=verdict.verdict,
        **canary,
    )
