"""What is judged and shown is what is so: no window reaches back before its step (after a resume the
restarted ramp does not meet the breach that stopped it), ``status`` says ``paused`` while a person
holds the ramp, an http backend's ``configure`` shows its change against what the service reports,
and the dashboard's unauthenticated pages read a flag service at most once a second, each read
bounded."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from click.testing import CliRunner

from rollout.checks.client import ServiceClient
from rollout.cli.main import cli
from rollout.dashboard.app import create_dashboard
from rollout.engine import runner
from rollout.engine.state import StateStore
from rollout.playbook.load import load_playbook
from rollout.providers import MetricSources
from rollout.util.clock import SystemClock
from rollout.util.serving import ServerThread
from tests.engine.test_engine import world  # noqa: F401 - fixture
from tests.flags.test_backend_trust import make_project
from tests.playbook.test_input_bounds import prom_playbook
from tests.support.hostile import Hostile, json_answer, trickled

CLAMPED = """\
      - {metric: errors, provider: prom, kind: rate, query: 'sum(increase(e[$window]))',
          samples: 'sum(increase(r[$window]))', target: 1%, alert: 5%}
      - {metric: delay_ms, provider: prom, kind: compare, judge: rank, step: 1s,
          query: 'd{cohort="$cohort"}', target: 100, alert: 300}
"""


@pytest.fixture
def prometheus():
    server = Hostile()
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    server.on("GET /api/v1/query", json_answer(empty))
    server.on(
        "GET /api/v1/query_range", json_answer({"status": "success", "data": {"resultType": "matrix", "result": []}})
    )
    yield server
    server.close()


def queried(prometheus: Hostile) -> list[dict[str, str]]:
    return [{k: v[0] for k, v in parse_qs(urlsplit(path).query).items()} for _, path, _ in prometheus.seen]


def test_every_provider_window_is_clamped_to_the_steps_start(tmp_path, prometheus):
    book = tmp_path / "p.yaml"
    book.write_text(prom_playbook(prometheus.url, "5m", CLAMPED))
    playbook = load_playbook(book)
    service = ServiceClient(prometheus.url)
    sources = MetricSources.build(playbook, service, lambda raw: raw)
    try:
        at_start = sources.read(playbook.gates["g"], 1000.0, 10, cap=0.0)
        assert prometheus.seen == []  # at the step's first instant there is nothing of it to ask for
        assert all(r.value is None and r.samples == 0 and r.error is None for r in at_start)
        sources.read(playbook.gates["g"], 1000.0, 10, cap=2.5)
    finally:
        sources.close()
        service.close()
    asked = queried(prometheus)
    ranges = [q["query"] for q in asked if "query" in q and "[" in q["query"]]
    assert ranges and all("[2500ms]" in q for q in ranges), ranges
    starts = [float(q["start"]) for q in asked if "start" in q]
    assert starts and all(s >= 1000.0 - 2.5 for s in starts), starts  # never before the step began


@pytest.mark.slow
def test_after_resume_the_restarted_ramp_judges_only_its_own_steps(world, sandbox):  # noqa: F811
    w = world(percentages="10, 25, 100", hold="2s", max_hold="3s")
    w.service.set_env(WHATSAPP_BREAKER_THRESHOLD=1000)  # the breach fails sends; no breaker stays open after it
    w.breach_at(25)
    first = w.advance()
    assert (first.status, first.exit_code) == ("rolled_back", 1), first.message
    sandbox.faults(error_rate=0.0)
    w.clock.on_sleep[:] = [w.traffic(40)]  # the provider healthy again, the customers still booking
    w.clock.advance(0.5)  # a person looks, decides, resumes: half a second after the flag-off
    assert "restarting at 10%" in runner.resume(w.project, "production", "fixed", w.clock).message
    again = w.advance()
    assert (again.status, again.exit_code) == ("completed", 0), again.message
    state = w.project.state()
    try:
        audit = state.audit_log("production")
        verdicts = state.verdicts("production")
    finally:
        state.close()
    resumed_at = next(a["ts"] for a in audit if a["action"] == "resumed_after_rollback")
    after = [v for v in verdicts if v["ts"] >= resumed_at]
    assert after and all(v["verdict"] != "fail" for v in after), [v["summary"] for v in after]
    # every window of every evaluation lies within its percentage's step: from the write on
    for v in verdicts:
        applied = max(
            a["ts"]
            for a in audit
            if a["action"] == "ramp" and a["detail"]["percent"] == v["percent"] and a["ts"] <= v["ts"]
        )
        for m in v["metrics"]:
            assert m["window_seconds"] <= v["ts"] - applied + 1e-6, (v["percent"], v["summary"], m)


def test_status_says_paused_while_a_person_holds_the_ramp(tmp_path, flag_service):
    project = make_project(tmp_path, flag_service.reset(enabled=True, percent=10))
    state = StateStore(project.state_path)
    try:
        state.update(
            "production",
            time.time(),
            status="running",
            phase="production",
            step_index=1,
            flag=True,
            percent=10,
            run_id="run-1",  # as every advance's run has: a person's pause belongs to it
        )
        state.acquire("production", time.time())  # held by this process, alive: the advance runs
    finally:
        state.close()
    runner.pause(project, "production", "looking at a graph", SystemClock())
    args = ["--playbook", str(project.playbook_path), "--environments", str(project.environments_dir)]
    args += ["--state", str(project.state_path)]
    shown = CliRunner().invoke(cli, ["status", "--json", *args], env={"FLAG_TOKEN": "x"})
    [row] = json.loads(shown.output)
    assert (row["status"], row["recorded_status"]) == ("paused", "running")
    runner.unpause(project, "production", "seen it", SystemClock())
    shown = CliRunner().invoke(cli, ["status", "--json", *args], env={"FLAG_TOKEN": "x"})
    assert json.loads(shown.output)[0]["status"] == "running"


def test_an_http_configure_shows_its_change_against_what_the_service_reports(tmp_path, flag_service, monkeypatch):
    from tests.support.flagservice import TOKEN

    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    svc = flag_service.reset(enabled=False, percent=0)
    project = make_project(tmp_path, svc)
    runner.configure(project, "production", {"FEATURE_ON": "false", "FEATURE_SHARE": "0"}, SystemClock())
    svc.state.update(enabled=True, percent=40)  # turned on by hand, outside rollout: its record says off
    done = runner.configure(project, "production", {"FEATURE_ON": "false", "FEATURE_SHARE": "0"}, SystemClock(), True)
    assert sorted(done.changes) == [("FEATURE_ON", "true", "false"), ("FEATURE_SHARE", "40", "0")]


def test_the_dashboards_open_pages_read_a_slow_flag_service_once_a_second_each_read_bounded(tmp_path, monkeypatch):
    server = Hostile()
    server.on("GET /admin/flag", trickled({"feature": {"enabled": True, "percent": 10}}, every=0.3))
    server.on("GET /healthz", json_answer({"status": "ok"}))
    monkeypatch.setenv("FLAG_TOKEN", "x")
    project = make_project(tmp_path, server)  # type: ignore[arg-type] - it has the url the project needs
    state = StateStore(project.state_path)
    state.update("production", time.time(), status="running", phase="production", flag=True, percent=10)
    state.close()
    app = ServerThread(create_dashboard(project, None)).start()
    try:
        with httpx.Client(base_url=app.url, timeout=30) as http:
            started = time.monotonic()
            for path in ("/api/state", "/metrics", "/api/state", "/metrics", "/api/state"):
                assert http.get(path).status_code == 200
            took = time.monotonic() - started
    finally:
        app.stop()
        server.close()
    reads = server.requests().count("GET /admin/flag")
    assert reads <= 3, f"{reads} reads of the flag service for 5 page loads"  # one a second, not one a page
    # each read bounded (the report's 1 s, plus a second), never the trickle's minutes (a single read took 75 s)
    assert took < 5 * (1.0 + 1.0), took
