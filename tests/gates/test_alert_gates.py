"""Gates on the alerts teams already have (``kind: alert``): judged alone, validated with their
lines, and read from a real Prometheus evaluating a real rule file and a real Alertmanager
(Prometheus sending to it, and alerts and silences posted to its API), through the real engine."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.gates import FAIL, HOLD, PASS, Alerts, Reading, judge_readings
from rollout.playbook.load import load_playbook
from rollout.playbook.model import GateSet
from rollout.providers import MetricSources
from rollout.providers.alerts import AlertmanagerAlerts
from rollout.providers.prometheus import PrometheusMetrics
from rollout.util.clock import SystemClock
from rollout.util.errors import PlaybookError
from rollout.util.serving import ServerThread
from tests.gates.test_metric_roles import PLAYBOOK
from tests.support.alertmanager import Alertmanager
from tests.support.flagservice import TOKEN
from tests.support.prometheus import Prometheus


def alert_gates(**metric: object) -> GateSet:
    spec = {"metric": "checkout", "provider": "prom", "kind": "alert", "alertname": "CheckoutErrorsHigh", **metric}
    return GateSet.model_validate({"window": 60, "metrics": [spec]})


PAGE = {"alertname": "CheckoutErrorsHigh", "alertstate": "firing", "severity": "page", "instance": "web-1"}


def test_a_firing_alert_fails_and_names_the_alert_and_its_labels():
    g = alert_gates(matchers=['severity="page"'])
    firing = judge_readings(g, [Reading(None, 1, 60.0, alerts=Alerts("prom", firing=(PAGE,)))])
    assert firing.verdict == FAIL
    assert firing.summary == (
        'fail: checkout: alert CheckoutErrorsHigh{severity="page"} FIRING in prom '
        '(1 series: {instance="web-1", severity="page"})'
    )
    assert judge_readings(g, [Reading(None, 1, 60.0, alerts=Alerts("prom"))]).verdict == PASS


def test_pending_silenced_and_no_data_hold():
    g = alert_gates()
    pending = judge_readings(g, [Reading(None, 1, 60.0, alerts=Alerts("prom", pending=(PAGE,)))])
    assert pending.verdict == HOLD and "pending" in pending.summary
    silenced = judge_readings(g, [Reading(None, 1, 60.0, alerts=Alerts("am", suppressed=(PAGE,)))])
    assert silenced.verdict == HOLD and "silenced or inhibited in am" in silenced.summary
    down = judge_readings(g, [Reading(None, 0, 60.0, error="prom: no alerting rule 'X' is loaded")])
    assert down.verdict == HOLD and "no data (prom: no alerting rule 'X' is loaded)" in down.metrics[0].reason


def test_a_firing_alert_takes_the_metrics_action():
    firing = [Reading(None, 1, 60.0, alerts=Alerts("prom", firing=(PAGE,)))]
    signal = judge_readings(alert_gates(role="signal"), firing)
    assert signal.verdict == HOLD and signal.stop and "FIRING" in signal.stop
    warned = judge_readings(GateSet.model_validate({**alert_gates().model_dump(), "on_guardrail": "warn"}), firing)
    assert warned.verdict == PASS and warned.warnings


BOOK = """\
version: 1
name: alerts
providers:
  prom: {{kind: prometheus, url: "http://127.0.0.1:9"}}
  am: {{kind: alertmanager, url: "http://127.0.0.1:9"}}
gates:
  g:
    window: 1m
    metrics:
      - {{metric: success_rate, target: 95%, alert: 90%}}
      - {metric}
phases:
  - name: production
    environment: production
    steps:
      - {{kind: configure}}
"""


@pytest.mark.parametrize(
    ("metric", "line", "problem"),
    [
        ("{metric: a, provider: prom, kind: alert}", "gates.g.metrics.1.alertname", "required for kind: alert"),
        (
            "{metric: a, provider: prom, kind: alert, alertname: X, alert: 5%}",
            "gates.g.metrics.1",
            "an alert metric takes no alert",
        ),
        ("{metric: a, kind: alert, alertname: X}", "gates.g.metrics.1.provider", "prometheus or alertmanager"),
        (
            "{metric: a, provider: am, kind: rate, query: q, samples: n, target: 1%, alert: 5%}",
            "gates.g.metrics.1.kind",
            "serves only kind: alert",
        ),
        (
            "{metric: a, provider: prom, kind: alert, alertname: X, matchers: [severity=page]}",
            "gates.g.metrics.1.matchers.0",
            'label matchers like severity="page"',
        ),
    ],
)
def test_bad_alert_metrics_are_named_with_their_line(tmp_path, metric, line, problem):
    book = tmp_path / "p.yaml"
    book.write_text(BOOK.format(metric=metric))
    with pytest.raises(PlaybookError) as caught:
        load_playbook(book, environ={})
    assert f"{book}:11: {line}" in str(caught.value) and problem in str(caught.value)


# --- real Prometheus and Alertmanager ---------------------------------------------------------------

RULES = """\
groups:
  - name: release
    rules:
      - alert: CheckoutErrorsHigh
        expr: checkout_error_ratio > 0.05
        labels: {severity: page}
      - alert: CheckoutSlow
        expr: checkout_latency_seconds > 1
        for: 1h
        labels: {severity: ticket}
"""


class Exporter:
    """The team's service as Prometheus scrapes it: two gauges a test sets."""

    def __init__(self) -> None:
        self.values = {"checkout_error_ratio": 0.0, "checkout_latency_seconds": 0.2}
        app = FastAPI()

        @app.get("/metrics")
        async def metrics() -> PlainTextResponse:
            return PlainTextResponse("".join(f"{k} {v}\n" for k, v in self.values.items()))

        self.server = ServerThread(app).start()
        self.address = f"127.0.0.1:{self.server.port}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Exporter, Prometheus, Alertmanager]]:
    exporter = Exporter()
    manager = Alertmanager(tmp_path_factory.mktemp("alertmanager"))
    prom = Prometheus(
        tmp_path_factory.mktemp("prometheus"), [exporter.address], rules=RULES, alertmanager=manager.address
    )
    try:
        wait(lambda: all(r["health"] == "ok" for r in rules(prom)) and len(rules(prom)) == 2, "rules evaluated")
        yield exporter, prom, manager
    finally:
        prom.close()
        manager.close()
        exporter.server.stop()


def rules(prom: Prometheus) -> list[dict]:
    groups = httpx.get(f"{prom.url}/api/v1/rules").json()["data"]["groups"]
    return [r for g in groups for r in g["rules"]]


def wait(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.2)


def judged(provider, **metric: object):
    """One evaluation of an alert metric through ``provider``, as the engine reads and judges it."""
    g = alert_gates(**metric)
    return judge_readings(g, MetricSources({"prom": provider}).read(g, time.time(), 10))


def calm(exporter: Exporter, prom: Prometheus) -> None:
    """Both gauges healthy again, and Prometheus no longer firing (one evaluation later)."""
    exporter.values.update(checkout_error_ratio=0.0, checkout_latency_seconds=0.2)
    provider = PrometheusMetrics(prom.url, None, 5.0, "prom")
    try:
        wait(lambda: judged(provider).verdict == PASS, "CheckoutErrorsHigh quiet again")
    finally:
        provider.close()


#: the three share one Prometheus, Alertmanager and exporter: on one worker
ON_THE_STACK = pytest.mark.xdist_group("alert_stack")


@pytest.mark.slow
@ON_THE_STACK
def test_prometheus_alerts_from_a_real_rule(stack):
    exporter, prom, _ = stack
    calm(exporter, prom)
    provider = PrometheusMetrics(prom.url, None, 5.0, "prom")
    try:
        quiet = judged(provider, matchers=['severity="page"'])
        assert quiet.verdict == PASS and "CheckoutErrorsHigh" in quiet.summary and "not firing" in quiet.summary
        exporter.values["checkout_latency_seconds"] = 3.0  # true, but not for the rule's `for: 1h`
        wait(lambda: judged(provider, alertname="CheckoutSlow").verdict == HOLD, "CheckoutSlow pending")
        assert "pending" in judged(provider, alertname="CheckoutSlow").summary
        exporter.values["checkout_error_ratio"] = 0.5
        wait(lambda: judged(provider).verdict == FAIL, "CheckoutErrorsHigh firing")
        firing = judged(provider, matchers=['severity=~"page|critical"'])
        assert firing.verdict == FAIL
        assert 'severity="page"' in firing.summary and f'instance="{exporter.address}"' in firing.summary
        # matchers narrow: the same alert with another severity does not fire
        assert judged(provider, matchers=['severity="ticket"']).verdict == PASS
        # no data: a rule that is not loaded (a typo) is never "not firing"
        typo = judged(provider, alertname="CheckoutErrorHigh")
        assert typo.verdict == HOLD
        assert (
            "no alerting rule 'CheckoutErrorHigh' is loaded (loaded: CheckoutErrorsHigh, CheckoutSlow)" in typo.summary
        )
    finally:
        provider.close()
        calm(exporter, prom)
    gone = PrometheusMetrics("http://127.0.0.1:9", None, 1.0, "prom")
    assert "unreachable" in judged(gone).summary and judged(gone).verdict == HOLD
    gone.close()


@pytest.mark.slow
@ON_THE_STACK
def test_alertmanager_alerts_and_silences(stack):
    exporter, prom, manager = stack
    provider = AlertmanagerAlerts(manager.url, None, 5.0, "am")
    try:
        manager.fire(alertname="PaymentsDown", service="payments", severity="page")
        down = judged(provider, alertname="PaymentsDown", matchers=['service="payments"'])
        assert down.verdict == FAIL
        assert 'alert PaymentsDown{service="payments"} FIRING in am (1 series: {service="payments", ' in down.summary
        assert judged(provider, alertname="PaymentsDown", matchers=['service="search"']).verdict == PASS
        assert judged(provider, alertname="NothingLikeIt").verdict == PASS
        manager.silence(alertname="PaymentsDown")
        wait(lambda: judged(provider, alertname="PaymentsDown").verdict == HOLD, "the silence applied")
        assert "silenced or inhibited in am" in judged(provider, alertname="PaymentsDown").summary
        # end to end: the real rule fires in Prometheus, which sends it to Alertmanager
        exporter.values["checkout_error_ratio"] = 0.5
        wait(lambda: judged(provider).verdict == FAIL, "Prometheus' alert reaching Alertmanager", timeout=60)
        assert 'severity="page"' in judged(provider).summary
    finally:
        provider.close()
        calm(exporter, prom)
    gone = AlertmanagerAlerts("http://127.0.0.1:9", None, 1.0, "am")
    assert judged(gone).verdict == HOLD and "unreachable" in judged(gone).summary
    gone.close()


@pytest.mark.slow
@ON_THE_STACK
def test_a_firing_alert_turns_the_flag_off_through_the_engine(stack, flag_service, tmp_path, monkeypatch):
    exporter, prom, _ = stack
    exporter.values["checkout_error_ratio"] = 0.5
    provider = PrometheusMetrics(prom.url, None, 5.0, "prom")
    wait(lambda: judged(provider).verdict == FAIL, "CheckoutErrorsHigh firing")
    provider.close()
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    svc = flag_service.reset()
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {svc.url}\n")
    book = tmp_path / "alerts.yaml"
    text = PLAYBOOK.format(watched="window: 10s").replace(
        "  stats: {kind: http}\n", f"  stats: {{kind: http}}\n  prom: {{kind: prometheus, url: '{prom.url}'}}\n"
    )
    book.write_text(
        text.replace(
            "      - {metric: new_path_errors",
            "      - {metric: checkout, provider: prom, kind: alert, alertname: CheckoutErrorsHigh, "
            "matchers: ['severity=\"page\"']}\n      - {metric: new_path_errors",
        )
    )
    project = Project(book, tmp_path / "environments", tmp_path / "state" / "state.db")
    try:
        with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
            outcome = runner.advance(ctx)
    finally:
        calm(exporter, prom)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert svc.state["enabled"] is False
    assert 'alert CheckoutErrorsHigh{severity="page"} FIRING in prom (1 series: {instance=' in outcome.message


def test_the_shipped_playbook_is_untouched_by_alert_keys():
    book = load_playbook(Path(__file__).parents[2] / "playbooks" / "whatsapp.yaml", environ={})
    assert all(m.kind != "alert" and m.alertname is None for g in book.gates.values() for m in g.metrics)
