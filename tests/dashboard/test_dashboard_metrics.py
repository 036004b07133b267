"""The tool's own metrics: ``/metrics`` on the dashboard after a real breach, scraped by a real
Prometheus (Debian's, started on a free port with a 1 s scrape interval)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from rollout.dashboard.app import create_dashboard
from rollout.util.serving import ServerThread
from tests.support.engine_harness import EngineWorld
from tests.support.prometheus import Prometheus

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow


@pytest.fixture
def breached(tmp_path, sandbox, monkeypatch):
    world = EngineWorld(tmp_path / "world", sandbox)
    world.environ(monkeypatch)
    world.breach_at(25)
    outcome = world.advance()
    assert outcome.status == "rolled_back", outcome.as_dict()
    yield world
    world.close()


def test_the_dashboard_exports_each_value_beside_its_thresholds_and_prometheus_scrapes_it(breached, tmp_path):
    dashboard = ServerThread(create_dashboard(breached.project, None)).start()
    try:
        text = httpx.get(f"{dashboard.url}/metrics").text

        labels = 'environment="production",metric="success_rate",provider="embedded",role="guardrail"'
        assert f"rollout_metric_target{{{labels}}} 0.95" in text
        assert f"rollout_metric_alert{{{labels}}} 0.9" in text
        # the last evaluation, the one that turned the flag off: a guardrail failed in it
        assert re.search(
            r'rollout_metric_verdict\{environment="production",metric="\w+",provider="embedded",'
            r'role="guardrail",verdict="fail"\} 1.0',
            text,
        ), text
        assert 'rollout_flag_offs_total{cause="analysis",environment="production"} 1.0' in text
        assert 'rollout_environment_status{environment="production",status="rolled_back"} 1.0' in text
        host = dashboard.url.removeprefix("http://")
        prom = Prometheus(tmp_path / "prom", [host])
        try:
            env = '{environment="production"}'
            assert prom.wait_for('rollout_flag_offs_total{environment="production",cause="analysis"}') == 1
            assert prom.wait_for(f"rollout_flag_enabled{env}") == 0
            verdicts = [v for v in breached.project.state().verdicts("production") if v["duration_s"] is not None]
            # which guardrail fails first depends on how the sends fell into the window: follow the one that did
            failed = next(m for m in verdicts[-1]["metrics"] if m["verdict"] == "fail")
            chosen = f'environment="production",metric="{failed["metric"]}"'
            value = prom.wait_for(f"rollout_metric_value{{{chosen}}}")
            alert = prom.wait_for(f"rollout_metric_alert{{{chosen}}}")
            # the breach, as a panel would draw it: the value on the wrong side of its alert line
            assert (value, alert) == (pytest.approx(failed["value"]), failed["alert"])
            assert value < alert if failed["target"] > failed["alert"] else value > alert
            assert prom.wait_for(f"rollout_evaluations_total{env}") == len(verdicts) > 0
            assert prom.wait_for(f"rollout_evaluation_duration_seconds_total{env}") > 0
            assert prom.wait_for('rollout_verdicts_total{environment="production",verdict="fail"}') >= 1
        finally:
            prom.close()
    finally:
        dashboard.stop()


def test_the_grafana_dashboard_in_the_docs_asks_only_for_series_the_dashboard_exports(breached):
    dashboard = ServerThread(create_dashboard(breached.project, None)).start()
    try:
        text = httpx.get(f"{dashboard.url}/metrics").text
    finally:
        dashboard.stop()
    exported = set(re.findall(r"^(rollout_\w+?)(?:\{| )", text, re.M))
    board = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-rollout.json").read_text())
    asked = {
        name
        for panel in board["panels"]
        for target in panel["targets"]
        for name in re.findall(r"rollout_\w+", target["expr"])
    }
    assert asked and asked <= exported, asked - exported
