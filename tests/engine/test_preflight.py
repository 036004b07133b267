"""Preflight: every gate query of a phase run once before anything is written (``preflight: true``
on the phase, and ``rollout validate --preflight --env``), against a team's service on loopback and
a real Prometheus with per-cohort series."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.preflight import run_preflight
from rollout.engine.project import Project
from rollout.util.clock import ManualClock
from tests.gates.test_alert_gates import Exporter
from tests.gates.test_metric_roles import PLAYBOOK
from tests.support.flagservice import TOKEN, FlagService
from tests.support.prometheus import Prometheus

START = datetime(2026, 1, 8, 10, tzinfo=UTC).timestamp()


@pytest.fixture
def svc(flag_service, monkeypatch):
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    return flag_service.reset(n=1000)


def project(tmp: Path, svc: FlagService, preflight: bool = True) -> Project:
    """The roles playbook, 20 samples a metric, holds of a minute (a manual clock runs them)."""
    (tmp / "environments").mkdir(exist_ok=True)
    (tmp / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {svc.url}\n")
    text = (
        PLAYBOOK.format(watched="window: 10s")
        .replace("    min_samples: 1\n", "    min_samples: 20\n")
        .replace("hold: 0.4s", "hold: 1m")
        .replace("interval: 0.1s", "interval: 10s")
    )
    if preflight:
        text = text.replace("    environment: production\n", "    environment: production\n    preflight: true\n")
    book = tmp / "preflight.yaml"
    book.write_text(text)
    return Project(book, tmp / "environments", tmp / "state" / "state.db")


def advance(proj: Project) -> runner.RunOutcome:
    with runner.open_context(proj, "production", ManualClock(START), QuietReporter()) as ctx:
        return runner.advance(ctx)


def actions(proj: Project) -> list[str]:
    state = proj.state(read_only=True)
    try:
        return [a["action"] for a in state.audit_log("production")]
    finally:
        state.close()


def test_a_preflight_that_passes_lets_the_phase_run(svc, tmp_path):
    proj = project(tmp_path, svc)
    outcome = advance(proj)
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    assert actions(proj)[0] == "preflight_passed"


def test_a_query_that_cannot_answer_stops_the_phase_before_any_flag_write(svc, tmp_path):
    svc.state["stats_status"] = 503
    proj = project(tmp_path, svc)
    outcome = advance(proj)
    assert (outcome.status, outcome.exit_code) == ("preflight_failed", 2), outcome.message
    assert outcome.message.startswith("preflight of phase production failed, nothing was changed: gate g: errors: ")
    assert "GET /stats failed: stats: /stats: HTTP 503" in outcome.message
    assert actions(proj) == ["preflight_failed"]  # no configure, no flag intent, no phase started
    assert (svc.state["enabled"], svc.state["percent"]) == (False, 0)
    # fixed, the next advance runs the preflight again and goes on
    svc.state["stats_status"] = 200
    assert advance(proj).exit_code == 0


def test_traffic_too_low_to_decide_within_the_hold_stops_it_and_says_what_to_change(svc, tmp_path):
    svc.state["n"] = 100  # 10/s in the 10 s window: 10 % of it is 10 samples per window, 20 needed
    outcome = advance(project(tmp_path, svc))
    assert outcome.exit_code == 2
    assert (
        "gate g: errors: at the traffic now (10/s) the smallest cohort (10% at 10%) gets about 10 samples in 10s; "
        "min_samples is 20, so the step would only hold" in outcome.message
    )
    assert svc.state["enabled"] is False


def test_a_metric_with_no_traffic_now_is_noted_not_failed(svc, tmp_path):
    proj = project(tmp_path, svc)
    proj.playbook_path.write_text(
        proj.playbook_path.read_text().replace("value: bad, samples: n}", "value: bad, samples: rate}")
    )
    with runner.open_context(proj, "production", ManualClock(START), QuietReporter(), read_only=True) as ctx:
        report = run_preflight(ctx)
    assert report.ok
    [quiet] = [c for c in report.checks if c.metric == "new_path_errors"]
    assert quiet.note and quiet.note.startswith("no traffic counted now (0 samples in 10s)")


def test_without_the_key_nothing_runs_before_the_first_step(svc, tmp_path):
    svc.state["stats_status"] = 503
    proj = project(tmp_path, svc, preflight=False)
    assert proj.playbook().phases[0].preflight is False
    outcome = advance(proj)
    assert outcome.exit_code != 2 and "preflight" not in " ".join(actions(proj))


@pytest.mark.slow
def test_validate_preflight_from_the_command_line(svc, tmp_path):
    proj = project(tmp_path, svc, preflight=False)  # the command runs it whatever the phase says

    def validate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rollout", "validate", str(proj.playbook_path), *extra],
            capture_output=True,
            text=True,
            timeout=60,
            env={"FLAG_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
            cwd=tmp_path,
        )

    good = validate("--preflight", "--env", "production", "--environments", str(proj.environments_dir))
    assert good.returncode == 0, good.stderr
    assert "  preflight ok   errors: GET /stats (about 100 samples per 10s at 10%)" in good.stdout
    assert "preflight: 2 gate queries of environment production answered as a ramp needs" in good.stdout
    svc.state["stats_status"] = 503
    bad = validate("--preflight", "--env", "production", "--environments", str(proj.environments_dir))
    assert bad.returncode == 2 and "preflight of environment production failed: gate g: errors:" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    usage = validate("--preflight")
    assert usage.returncode == 2 and "--preflight and --env go together" in usage.stderr
    assert not (tmp_path / ".rollout" / "state.db").exists()  # read-only: no state database made


# --- a real Prometheus: per-cohort series -----------------------------------------------------------

COMPARE = """\
version: 1
name: cohorts
providers:
  prom: {{kind: prometheus, url: "{url}"}}
gates:
  g:
    window: 1m
    min_samples: {min_samples}
    metrics:
      - metric: errors
        provider: prom
        kind: compare
        query: '{query}'
        samples: '{samples}'
        target: 1%
        alert: 2%
{cohorts}
phases:
  - name: production
    environment: production
    steps:
      - {{kind: configure}}
      - {{kind: ramp, percentages: [10, 50, 100], hold: 1m, gate: g}}
"""


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> Iterator[Prometheus]:
    exporter = Exporter()
    exporter.values = {
        'requests{cohort="treatment"}': 0,
        'requests{cohort="control"}': 6000,
        'errors{cohort="treatment"}': 0,
        'errors{cohort="control"}': 30,
    }
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [exporter.address])
    try:
        prom.wait_for('sum(requests{cohort="control"})')
        yield prom
    finally:
        prom.close()
        exporter.server.stop()


def preflight(tmp: Path, prom: Prometheus, **changes: str) -> list[str]:
    keys = {
        "query": 'sum(errors{cohort="$cohort"})',
        "samples": 'sum(requests{cohort="$cohort"})',
        "min_samples": "20",
        "cohorts": "",
        **changes,
    }
    (tmp / "environments").mkdir(exist_ok=True)
    (tmp / "environments" / "production.yaml").write_text(
        f"name: production\nservice_url: http://127.0.0.1:9\nenv_file: {tmp / 'service.env'}\n"
    )
    book = tmp / "cohorts.yaml"
    book.write_text(COMPARE.format(url=prom.url, **keys))
    proj = Project(book, tmp / "environments", tmp / "state.db")
    with runner.open_context(
        proj, "production", ManualClock(datetime.now(UTC).timestamp()), QuietReporter(), read_only=True
    ) as ctx:
        return run_preflight(ctx).problems


@pytest.mark.slow
def test_per_cohort_series_checked_against_a_real_prometheus(cohorts, tmp_path):
    assert preflight(tmp_path, cohorts) == []
    [typo] = preflight(tmp_path, cohorts, query='sum(error{cohort="$cohort"})')
    assert typo == (
        "gate g: errors: query 'sum(error{cohort=\"treatment\"})' for the treatment cohort returned no series: "
        "check the metric's name and labels"
    )
    [labels] = preflight(tmp_path, cohorts, cohorts="        cohorts: {treatment: 'on', control: 'off'}")
    assert "for the on cohort returned no series" in labels
    [same] = preflight(
        tmp_path, cohorts, query='sum(errors{cohort=~".+|$cohort"})', samples='sum(requests{cohort=~".+|$cohort"})'
    )
    assert "treatment (treatment) and control (control) read the same series" in same
    [slow] = preflight(tmp_path, cohorts, min_samples="1000")
    assert "at the traffic now (100/s) the smallest cohort (10% at 10%) gets about 600 samples in 1m" in slow
