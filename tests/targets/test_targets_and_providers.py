"""Rolling out any service: metric providers (a real Prometheus, any JSON endpoint), flag backends
(an HTTP admin endpoint, a command), and a stand-in service that has nothing of the embedded one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from rollout.console import QuietReporter
from rollout.demo import Traffic
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.flags import FlagWriteError, make_flags
from rollout.gates import FAIL, judge_readings
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec, GateSet, HttpQuery, MetricGate
from rollout.providers.http import HttpMetrics
from rollout.providers.prometheus import PrometheusMetrics
from rollout.util.clock import SystemClock
from rollout.util.errors import MeasurementError
from tests.support.harness import Service, base_env, wait_until
from tests.support.prometheus import Prometheus
from tests.support.standin import TOKEN, StandIn


@pytest.fixture
def standin():
    app = StandIn()
    yield app
    app.close()


@pytest.fixture
def prometheus_of(tmp_path):
    started = []

    def start(*targets: str) -> Prometheus:
        server = Prometheus(tmp_path / f"prometheus-{len(started)}", list(targets))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def rate_metric(**kw) -> MetricGate:
    base = dict(
        metric="new_path_error_rate",
        provider="prom",
        kind="rate",
        target=0.01,
        alert=0.05,
        query='sum(increase(standin_errors_total{path="new"}[$window]))',
        samples='sum(increase(standin_requests_total{path="new"}[$window]))',
    )
    return MetricGate(**{**base, **kw})


@pytest.mark.slow
def test_prometheus_provider_reads_a_real_server(standin, prometheus_of):
    prom = prometheus_of(standin.host_port)
    standin.flag.update(enabled=True, percent=100, fail_rate=0.5)
    standin.start_traffic(50)
    prom.wait_for('sum(standin_errors_total{path="new"})')
    metrics = PrometheusMetrics(prom.url, None, 5.0, "prom")
    try:
        now = SystemClock().time()
        wait_until(lambda: metrics.measure(rate_metric(), 5.0, SystemClock().time(), 100).samples > 20, timeout=20)
        reading = metrics.measure(rate_metric(), 5.0, SystemClock().time(), 100)
        assert 0.2 < reading.value < 0.8 and reading.samples > 20 and reading.window == 5.0
        # an empty vector is no data, never zero
        empty = metrics.measure(
            rate_metric(samples='sum(increase(standin_requests_total{path="nope"}[$window]))'), 5.0, now, 100
        )
        assert (empty.value, empty.samples) == (None, 0)
        gauge = MetricGate(
            metric="absent", provider="prom", kind="gauge", query="sum(no_such_metric)", target=1, alert=5
        )
        assert metrics.measure(gauge, 5.0, now, 100).value is None
        # a query error names the query and Prometheus' message
        with pytest.raises(MeasurementError, match=r"query 'sum\(' failed: bad_data: .*parse error"):
            metrics.query("sum(", now)
        # more than one series: a gate judges one number
        with pytest.raises(MeasurementError, match=r"returned 2 series; .* aggregate"):
            metrics.query('{__name__=~"standin_(requests|errors)_total"}', SystemClock().time())
    finally:
        metrics.close()


def test_http_provider_picks_fields_and_says_what_is_missing(standin):
    standin.flag.update(enabled=True, percent=100, fail_rate=1.0)
    standin.start_traffic(100)
    wait_until(lambda: standin.flag["new"][0] >= 10)
    metrics = HttpMetrics(standin.url, None, 5.0, "stats")
    try:
        spec = MetricGate(
            metric="new_errors",
            provider="stats",
            kind="rate",
            target=0.01,
            alert=0.05,
            query=HttpQuery(url="/stats?window=$window", value="new_path.error_rate", samples="new_path.requests"),
        )
        reading = metrics.measure(spec, 30.0, 0.0, 100)
        assert reading.value == 1.0 and reading.samples >= 10
        missing = spec.model_copy(update={"query": HttpQuery(url="/stats", value="new_path.nope")})
        with pytest.raises(MeasurementError, match=r"no field 'new_path\.nope'"):
            metrics.measure(missing, 30.0, 0.0, 100)
    finally:
        metrics.close()


FLAG = dict(
    backend="http",
    variable="FEATURE_ON",
    percent_variable="FEATURE_SHARE",
    url="/admin/flag",
    token="${STANDIN_TOKEN}",
    body={"on": "$enabled", "share": "$percent"},
    read={"url": "/admin/flag", "enabled": "feature.enabled", "percent": "feature.percent"},
)


def test_http_flag_backend_writes_the_template_and_refuses_loudly(standin, tmp_path):
    env = Environment(name="production", service_url=standin.url)
    flags = make_flags(FlagSpec(**FLAG), env, tmp_path, lambda ref: TOKEN)
    before = flags.set(enabled=True, percent=25)
    assert before == {"FEATURE_ON": "false"} and standin.flag["enabled"] is True and standin.flag["percent"] == 25
    flags.set(enabled=False)  # the percentage is kept
    assert (standin.flag["enabled"], standin.flag["percent"]) == (False, 25) and flags.state() == (False, 25)
    wrong = make_flags(FlagSpec(**FLAG), env, tmp_path, lambda ref: "wrong-token")
    with pytest.raises(FlagWriteError, match="answered HTTP 401"):
        wrong.set(enabled=True, percent=50)
    assert standin.flag["enabled"] is False  # nothing changed
    flags.close()
    wrong.close()


def test_command_flag_backend_runs_the_command_and_fails_on_a_nonzero_exit(standin, tmp_path):
    script = (
        "import sys, httpx; r = httpx.put(sys.argv[1] + '/admin/flag', json={'on': sys.argv[2] == 'true', "
        "'share': int(sys.argv[3])}, headers={'Authorization': 'Bearer ' + sys.argv[4]}); "
        "sys.exit(0 if r.status_code == 200 else 3)"
    )
    spec = FlagSpec(
        backend="command", command=[sys.executable, "-c", script, standin.url, "{enabled}", "{percent}", TOKEN]
    )
    env = Environment(name="production", service_url=standin.url)
    flags = make_flags(spec, env, tmp_path, lambda ref: "")
    flags.set(enabled=True, percent=40)
    assert (standin.flag["enabled"], standin.flag["percent"]) == (True, 40)
    bad = make_flags(
        spec.model_copy(update={"command": [sys.executable, "-c", "import sys; sys.exit(3)"]}),
        env,
        tmp_path,
        lambda ref: "",
    )
    with pytest.raises(FlagWriteError, match="exited 3"):
        bad.set(enabled=False)


STANDIN_PLAYBOOK = """\
version: 1
name: standin
target:
  kind: http
  health: {{url: /healthz, expect: {{status: 200, json: {{status: ok}}}}}}
flag:
  backend: http
  variable: FEATURE_ON
  percent_variable: FEATURE_SHARE
  url: /admin/flag
  token: ${{STANDIN_TOKEN}}
  body: {{"on": $enabled, "share": $percent}}
  read: {{url: /admin/flag, enabled: feature.enabled, percent: feature.percent}}
providers:
  prom: {{kind: prometheus, url: "{prometheus}"}}
gates:
  g:
    window: 10s
    min_samples: 5
    metrics:
      - metric: new_path_error_rate
        provider: prom
        kind: rate
        query: sum(increase(standin_errors_total{{path="new"}}[$window]))
        samples: sum(increase(standin_requests_total{{path="new"}}[$window]))
        target: 1%
        alert: 5%
watch: {{gate: g, interval: 1s}}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - kind: smoke
        checks:
          - {{type: http, name: health answers, path: /healthz, expect: {{status: 200, json: {{status: ok}}}}}}
          - type: http
            name: the flag endpoint reports the flag off
            url: "{standin}/admin/flag"
            headers: {{Authorization: "Bearer ${{STANDIN_TOKEN}}"}}
            expect: {{status: 200, json: {{feature.enabled: false}}}}
      - {{kind: health, name: healthy}}
      - kind: load
        name: the old path under load
        request: {{method: POST, path: "/work?user=load-$i", ok_status: [200]}}
        rate: 100
        duration: 2s
        expect: {{booking_success_rate: 99%, p99_ms: 1000}}
      - kind: ramp
        percentages: [10, 100]
        hold: 5s
        interval: 1s
        gate: g
        max_hold: 15s
        on_hold_timeout: fail
"""


def standin_project(tmp_path: Path, standin: StandIn, prometheus: Prometheus, monkeypatch) -> Project:
    monkeypatch.setenv("STANDIN_TOKEN", TOKEN)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {standin.url}\n")
    book = tmp_path / "standin.yaml"
    book.write_text(STANDIN_PLAYBOOK.format(prometheus=prometheus.url, standin=standin.url))
    return Project(book, tmp_path / "environments", tmp_path / "state" / "state.db")


def advance(project: Project) -> runner.RunOutcome:
    with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
        return runner.advance(ctx)


@pytest.mark.slow
def test_a_stand_in_service_ramps_to_100_percent_on_prometheus_gates(standin, prometheus_of, tmp_path, monkeypatch):
    prom = prometheus_of(standin.host_port)
    project = standin_project(tmp_path, standin, prom, monkeypatch)
    standin.start_traffic(80)
    outcome = advance(project)
    state = project.state()
    try:
        trail = [(a["action"], a["detail"]) for a in state.audit_log("production")]
        verdicts = state.verdicts("production")
    finally:
        state.close()
    assert (outcome.status, outcome.exit_code) == ("completed", 0), (outcome.message, trail)
    assert (standin.flag["enabled"], standin.flag["percent"]) == (True, 100)
    load = next(a for a in trail if a[0] == "step_done" and a[1]["step"] == "the old path under load")
    assert "2 check(s) passed" in load[1]["detail"]
    last = verdicts[-1]["metrics"][0]
    assert verdicts[-1]["verdict"] == "pass" and last["provider"] == "prom" and last["samples"] >= 5
    assert TOKEN not in str(trail)


@pytest.mark.slow
def test_a_stand_in_service_is_rolled_back_on_a_prometheus_breach(standin, prometheus_of, tmp_path, monkeypatch):
    prom = prometheus_of(standin.host_port)
    project = standin_project(tmp_path, standin, prom, monkeypatch)
    standin.faults(0.5)  # the new code path fails half the time
    standin.start_traffic(80)
    outcome = advance(project)
    state = project.state()
    try:
        audit = state.audit_log("production")
    finally:
        state.close()
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert "new_path_error_rate" in outcome.message and "alert 5.00%" in outcome.message
    assert standin.flag["enabled"] is False  # turned off through the http backend ...
    assert "flag_off_confirmed" in [a["action"] for a in audit]  # ... and read back from the target
    report = next((tmp_path / "state" / "incidents").glob("production-*.md")).read_text()
    assert "new_path_error_rate" in report and TOKEN not in report


@pytest.mark.slow
@pytest.mark.parametrize("breach", [True, False], ids=["provider-breach", "healthy"])
def test_the_shipped_ramp_on_prometheus_gates(sandbox, prometheus_of, tmp_path, monkeypatch, breach):
    """The shipped production phase, its gate switched to a Prometheus query over the embedded
    service's own /metrics: rolled back on a provider breach, completed when healthy."""
    from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN

    service = (
        Service(tmp_path / "svc", base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False), clock=SystemClock())
        if (tmp_path / "svc").mkdir() is None
        else None
    )
    prom = prometheus_of(service.url.removeprefix("http://"))
    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    shipped = (Path(__file__).resolve().parents[2] / "playbooks" / "whatsapp.yaml").read_text()
    production = shipped[shipped.index("  - name: production") :]
    production = production.replace(
        "      - kind: approve\n        name: production deployment approved\n"
        '        message: "Merge staging into main and deploy with the flag off"\n',
        "",
    )
    production = (
        production[: production.index("      - kind: promote")]
        + production[production.index("      - kind: configure") :]
    )
    book = tmp_path / "p.yaml"
    book.write_text(f"""\
version: 1
name: shipped ramp on prometheus
providers:
  prom: {{kind: prometheus, url: "{prom.url}"}}
gates:
  seed:
    window: 10s
    min_samples: 5
    metrics:
      - metric: notification_failure_rate
        provider: prom
        kind: rate
        query: sum(increase(rollout_whatsapp_notification_outcomes_total{{outcome="failed"}}[$window]))
        samples: sum(increase(rollout_whatsapp_notification_outcomes_total{{outcome=~"sent|failed"}}[$window]))
        target: 1%
        alert: 5%
watch: {{gate: seed, interval: 1s}}
phases:
{production}""")
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(
        f"name: production\nservice_url: {service.url}\nenv_file: {service.env_file}\nvariables:\n"
        f"  ZAPTRA_API_URL: {sandbox.api_url}\n  ZAPTRA_API_TOKEN: ${{ZAPTRA_API_TOKEN}}\n"
        "  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
    )
    monkeypatch.setenv("ROLLOUT_RAMP_HOLD", "5s")
    monkeypatch.setenv("ROLLOUT_RAMP_INTERVAL", "1s")
    monkeypatch.setenv("ROLLOUT_MAX_HOLD", "15s")
    project = Project(book, tmp_path / "environments", tmp_path / "state.db")
    traffic = Traffic(service.url, 50).start()
    try:
        if breach:
            sandbox.faults(error_rate=1.0, error_message="(#131000) Something went wrong")
        with runner.open_context(project, "production", SystemClock(), QuietReporter(), approve=True) as ctx:
            outcome = runner.advance(ctx)
        flag = service.metrics(1)["flag_enabled"], service.metrics(1)["rollout_percent"]
    finally:
        traffic.stop()
        service.close()
    if breach:
        assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
        assert "notification_failure_rate" in outcome.message and flag[0] is False
    else:
        assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
        assert flag == (True, 100)


@pytest.mark.slow
def test_a_prometheus_compare_gate_fails_the_new_path_and_not_a_bad_day_for_everyone(standin, prometheus_of):
    everyone = StandIn()  # a second service, on a bad day for both code paths
    try:
        prom = prometheus_of(standin.host_port, everyone.host_port)
        metrics = PrometheusMetrics(prom.url, None, 5.0, "prom")

        def spec(instance: str) -> MetricGate:
            return MetricGate(
                metric="request_error_rate",
                provider="prom",
                kind="compare",
                target=0.01,
                alert=0.05,
                query=f'sum(increase(standin_errors_total{{instance="{instance}",path="$cohort"}}[$window]))',
                samples=f'sum(increase(standin_requests_total{{instance="{instance}",path="$cohort"}}[$window]))',
                cohorts={"treatment": "new", "control": "old"},
            )

        bad_path, bad_day = spec(standin.host_port), spec(everyone.host_port)
        gates = GateSet(window=60, min_samples=40, metrics=[bad_path, bad_day])
        standin.flag.update(enabled=True, percent=50, fail_rate=0.4)
        everyone.flag.update(enabled=True, percent=50, everyone_fail_rate=0.4)
        standin.start_traffic(60)
        everyone.start_traffic(60)

        def judged():
            now = SystemClock().time()
            return judge_readings(gates, [metrics.measure(s, 60, now, 50) for s in (bad_path, bad_day)])

        verdict = wait_until(
            lambda: (v := judged()).metrics[0].verdict == FAIL and v.metrics[1].samples >= 40 and v,
            timeout=60,
            what="the new path's breach to be clear",
        )
        new_path, both = verdict.metrics
        assert (
            "request_error_rate: treatment" in new_path.reason and "treatment is worse than control" in new_path.reason
        )
        assert both.verdict != FAIL, both.reason  # 40 % errors on both paths: not the feature's fault
        assert both.value is not None and abs(both.value) < 0.2
        metrics.close()
    finally:
        everyone.close()
