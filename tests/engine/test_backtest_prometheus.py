"""``rollout backtest --from --to`` against a real Prometheus holding a past breach: two hours of a
service's request and error counters, written into Prometheus' own TSDB blocks with ``promtool tsdb
create-blocks-from openmetrics`` (Prometheus cannot be scraped into the past), 40 % errors from 40
minutes in. Would the candidate's gate have caught it, and when?"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.cli.test_cli_engine import rollout
from tests.support.prometheus import Prometheus
from tests.support.requirements_servers import promtool_binary, unavailable

#: one worker fills the module's Prometheus with the past once: spread over workers, each filled its own
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backtest_prometheus")]

PLAYBOOK = """\
version: 1
name: past
providers:
  prom: {{kind: prometheus, url: "{url}"}}
gates:
  g:
    window: 5m
    min_samples: 50
    metrics:
      - metric: new_path_error_rate
        provider: prom
        kind: rate
        query: sum(increase(app_errors_total{{path="new"}}[$window]))
        samples: sum(increase(app_requests_total{{path="new"}}[$window]))
        target: 1%
        alert: {alert}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{FEATURE: "off"}}
      - kind: ramp
        name: ramp
        percentages: [10, 50, 100]
        hold: 30m
        interval: 1m
        gate: g
"""

BREACH_AT = 40 * 60


def _promtool() -> str:
    found = promtool_binary()
    if found is None:
        unavailable("promtool")
    return found


@pytest.fixture(scope="module")
def past(tmp_path_factory):
    """A Prometheus whose TSDB holds two hours ending an hour ago: 5 requests/s on the new path, 40 %
    of them failing from 40 minutes in."""
    promtool = _promtool()
    folder = tmp_path_factory.mktemp("prom-past")
    start = (int(time.time()) - 3 * 3600) // 60 * 60
    requests, errors = [], []
    served = failed = 0.0
    for i in range(0, 2 * 3600 + 1, 15):
        requests.append(f'app_requests_total{{path="new"}} {served} {start + i}')
        errors.append(f'app_errors_total{{path="new"}} {failed} {start + i}')
        served += 5 * 15
        if i >= BREACH_AT:
            failed += 0.4 * 5 * 15
    text = "\n".join(["# TYPE app_requests counter", *requests, "# TYPE app_errors counter", *errors, "# EOF"])
    (folder / "past.om").write_text(text + "\n")
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(folder / "past.om"), str(folder / "prom" / "data")],
        check=True,
        capture_output=True,
    )
    server = Prometheus(folder / "prom", [])
    yield server, start, folder
    server.close()


def _project(folder, url: str, alert: str = "5%"):
    (folder / "playbooks").mkdir(exist_ok=True)
    (folder / "environments").mkdir(exist_ok=True)
    playbook = folder / "playbooks" / f"past-{alert.rstrip('%')}.yaml"
    playbook.write_text(PLAYBOOK.format(url=url, alert=alert))
    (folder / "environments" / "production.yaml").write_text(
        "name: production\nservice_url: http://127.0.0.1:9\nenv_file: service.env\n"
    )
    return playbook


def run(folder, playbook, *args):
    return rollout(
        folder,
        *("backtest", "--env", "production", "--playbook", str(playbook), "--state", "state.db", "--json", *args),
    )


def test_the_gate_would_have_caught_the_past_breach_minutes_after_it_began(past):
    server, start, folder = past
    playbook = _project(folder, server.url)
    proc = run(folder, playbook, "--from", str(start), "--to", str(start + 2 * 3600))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [replay] = json.loads(proc.stdout)["runs"]
    assert replay["recorded"] == "not_recorded" and replay["replayed"] == "rolled_back"
    caught = replay["replayed_off_at"] - start
    # 10 % passed its 30 m hold, 50 % was being held when the errors began at +40m
    assert BREACH_AT < caught <= BREACH_AT + 5 * 60, caught
    assert [s["percent"] for s in replay["steps"]] == [10, 50]
    assert [s["decided"] for s in replay["steps"]] == ["pass", "fail"]
    last = replay["steps"][-1]["evaluations"][-1]
    assert last["replayed"] == "fail" and last["deciding"].startswith("new_path_error_rate")
    assert "would have rolled back at +4" in json.loads(proc.stdout)["summary"][0]
    assert not (folder / "state.db").exists()  # read-only: no state file made


def test_held_at_one_percentage_and_before_the_breach(past):
    server, start, folder = past
    playbook = _project(folder, server.url)
    held = json.loads(
        run(folder, playbook, "--from", str(start), "--to", str(start + 2 * 3600), "--percent", "25").stdout
    )
    [replay] = held["runs"]
    assert replay["replayed"] == "rolled_back" and [s["percent"] for s in replay["steps"]] == [25]
    calm = json.loads(
        run(folder, playbook, "--from", str(start), "--to", str(start + 35 * 60), "--percent", "25").stdout
    )
    assert calm["runs"][0]["replayed"] == "held"
    assert calm["summary"] == [f"{calm['runs'][0]['source']}: would not have rolled back (held)"]


def test_a_looser_alert_would_have_missed_it(past):
    server, start, folder = past
    looser = _project(folder, server.url, alert="50%")
    data = json.loads(run(folder, looser, "--from", str(start), "--to", str(start + 2 * 3600)).stdout)
    assert data["runs"][0]["replayed"] != "rolled_back"


@pytest.fixture(scope="module")
def recent(tmp_path_factory):
    """A Prometheus holding the last 70 minutes of the same counters, 5 requests/s."""
    promtool = _promtool()
    folder = tmp_path_factory.mktemp("prom-recent")
    now = int(time.time())
    points = [f'app_requests_total{{path="new"}} {5 * i} {now - 70 * 60 + i}' for i in range(0, 70 * 60, 15)]
    errors = [f'app_errors_total{{path="new"}} 0 {now - 70 * 60 + i}' for i in range(0, 70 * 60, 15)]
    text = "\n".join(["# TYPE app_requests counter", *points, "# TYPE app_errors counter", *errors, "# EOF"])
    (folder / "recent.om").write_text(text + "\n")
    subprocess.run(
        [
            promtool,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(folder / "recent.om"),
            str(folder / "prom" / "data"),
        ],
        check=True,
        capture_output=True,
    )
    server = Prometheus(folder / "prom", [])
    yield server, folder
    server.close()


def test_plan_reads_the_traffic_from_prometheus_over_the_last_hour(recent):
    server, folder = recent
    playbook = _project(folder, server.url)
    proc = rollout(folder, "plan", "--env", "production", "--playbook", str(playbook), "--state", "s.db", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    forecast = json.loads(proc.stdout)["forecast"]
    assert forecast["traffic_source"] == "prom: new_path_error_rate's samples query over the last hour"
    assert forecast["traffic_per_s"] == pytest.approx(5.0, rel=0.05)
    assert [s["percent"] for s in forecast["steps"]] == [10, 50, 100]
