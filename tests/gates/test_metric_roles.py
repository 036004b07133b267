"""Metrics that watch without deciding, and limits: ``role`` (guardrail, signal, shadow),
``initial_delay``, ``failure_limit`` and ``error_limit``, judged alone and through the real engine
against a real service on loopback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.gates import FAIL, HOLD, PASS, Reading, StepCounts, judge_readings
from rollout.playbook.load import load_playbook
from rollout.playbook.model import GateSet
from rollout.util.clock import SystemClock
from rollout.util.errors import PlaybookError
from tests.support.flagservice import TOKEN, FlagService


def gates(**watched: object) -> GateSet:
    """A guardrail that passes (``ok``) and the metric under test (``bad``) with ``watched`` options."""
    return GateSet.model_validate(
        {
            "window": 10,
            "min_samples": 1,
            "metrics": [
                {
                    "metric": "ok",
                    "provider": "p",
                    "kind": "rate",
                    "query": "q",
                    "samples": "n",
                    "target": 0.01,
                    "alert": 0.05,
                },
                {
                    "metric": "bad",
                    "provider": "p",
                    "kind": "rate",
                    "query": "q",
                    "samples": "n",
                    "target": 0.01,
                    "alert": 0.05,
                    **watched,
                },
            ],
        }
    )


GOOD, BREACH, DOWN = Reading(0.0, 500, 10.0), Reading(0.5, 500, 10.0), Reading(None, 0, 10.0, error="stats: HTTP 503")


def test_a_failing_metric_fails_only_at_its_failure_limit_and_says_how_far_it_is():
    g, counts = gates(failure_limit=3), StepCounts()
    verdicts = [judge_readings(g, [GOOD, BREACH], counts=counts) for _ in range(3)]
    assert [v.verdict for v in verdicts] == [HOLD, HOLD, FAIL]
    assert "failing evaluation 1 of the 3 allowed" in verdicts[0].metrics[1].reason
    assert [v.metrics[1].failures for v in verdicts] == [1, 2, 3]
    # the default is today's: the first failing evaluation fails
    assert judge_readings(gates(), [GOOD, BREACH]).verdict == FAIL


def test_a_shadow_is_judged_and_shown_but_never_decides():
    verdict = judge_readings(gates(role="shadow"), [GOOD, BREACH])
    assert verdict.verdict == PASS and verdict.stop is None
    shadow = verdict.metrics[1]
    assert (shadow.role, shadow.verdict) == ("shadow", FAIL) and "alert" in shadow.reason
    assert "; shadow bad 50.00% > alert 5.00%" in verdict.summary


def test_a_signal_that_fails_stops_for_a_person_and_never_fails_the_verdict():
    verdict = judge_readings(gates(role="signal"), [GOOD, BREACH])
    assert verdict.verdict == HOLD and verdict.stop and verdict.stop.startswith("signal bad 50.00% > alert 5.00%")
    assert "stopped for a person" in verdict.summary


def test_provider_errors_count_towards_error_limit_never_as_failures():
    g, counts = gates(error_limit=3), StepCounts()
    verdicts = [judge_readings(g, [GOOD, DOWN], counts=counts) for _ in range(3)]
    assert [v.verdict for v in verdicts] == [HOLD, HOLD, HOLD]
    assert [v.stop for v in verdicts[:2]] == [None, None]
    assert verdicts[2].stop == "bad: 3 provider errors in a row (error_limit 3)"
    assert verdicts[2].metrics[1].failures == 0 and verdicts[2].metrics[1].errors_in_a_row == 3
    # an answer in between starts the count again
    counts = StepCounts()
    for reading in (DOWN, DOWN, GOOD, DOWN, DOWN):
        last = judge_readings(g, [GOOD, reading], counts=counts)
    assert last.stop is None and last.metrics[1].errors_in_a_row == 2


def test_a_metric_is_not_judged_before_its_initial_delay():
    g = gates(initial_delay="30s")
    early = judge_readings(g, [GOOD, BREACH], elapsed=12.0)
    assert (
        early.verdict == HOLD
        and "not judged before its initial_delay 30s (12s into the step)" in early.metrics[1].reason
    )
    assert judge_readings(g, [GOOD, BREACH], elapsed=31.0).verdict == FAIL


def test_limits_go_on_counting_from_the_recorded_evaluation():
    counts = StepCounts([{"metric": "bad", "failures": 2, "errors_in_a_row": 0}])
    assert judge_readings(gates(failure_limit=3), [GOOD, BREACH], counts=counts).verdict == FAIL


def test_a_gate_set_of_shadows_only_is_refused():
    with pytest.raises(ValueError, match="at least one must decide"):
        GateSet.model_validate(
            {"window": 10, "metrics": [{"metric": "success_rate", "target": 0.95, "alert": 0.9, "role": "shadow"}]}
        )


# --- through the engine ------------------------------------------------------------------------------

PLAYBOOK = """\
version: 1
name: roles
target:
  kind: http
  health: {{url: /healthz, expect: {{status: 200}}}}
flag:
  backend: http
  variable: FEATURE_ON
  percent_variable: FEATURE_SHARE
  url: /admin/flag
  token: ${{FLAG_TOKEN}}
  timeout: 1s
  body: {{"on": $enabled, "share": $percent}}
  read: {{url: /admin/flag, enabled: feature.enabled, percent: feature.percent}}
providers:
  stats: {{kind: http}}
gates:
  g:
    window: 10s
    min_samples: 1
    metrics:
      - {{metric: errors, provider: stats, kind: rate, query: {{url: /stats, value: ok, samples: n}}, target: 1%, alert: 5%}}
      - {{metric: new_path_errors, provider: stats, kind: rate, query: {{url: /stats, value: bad, samples: n}},
          target: 1%, alert: 5%, {watched}}}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - kind: ramp
        percentages: [10, 100]
        hold: 0.4s
        interval: 0.1s
        gate: g
        max_hold: 5s
        on_hold_timeout: fail
"""


@pytest.fixture
def svc(flag_service, monkeypatch):
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    return flag_service.reset()


def advance(tmp: Path, svc: FlagService, watched: str) -> tuple[runner.RunOutcome, Project]:
    (tmp / "environments").mkdir()
    (tmp / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {svc.url}\n")
    book = tmp / "roles.yaml"
    book.write_text(PLAYBOOK.format(watched=watched))
    project = Project(book, tmp / "environments", tmp / "state" / "state.db")
    with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
        return runner.advance(ctx), project


def records(project: Project) -> tuple[list[str], list[dict]]:
    state = project.state(read_only=True)
    try:
        return [a["action"] for a in state.audit_log("production")], state.verdicts("production")
    finally:
        state.close()


def test_a_signal_that_fails_stops_the_ramp_for_a_person_and_leaves_the_flag_alone(svc, tmp_path):
    svc.state["bad"] = 0.5
    outcome, project = advance(tmp_path, svc, "role: signal")
    assert (outcome.status, outcome.exit_code) == ("awaiting_approval", 3), outcome.message
    assert "stopped for a person: signal new_path_errors 50.00% > alert 5.00%" in outcome.message
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 10)  # untouched
    actions, verdicts = records(project)
    assert "flag_off" not in actions and actions[-1] == "awaiting_approval"
    assert verdicts[-1]["metrics"][1]["role"] == "signal" and verdicts[-1]["metrics"][1]["verdict"] == "fail"


def test_a_shadow_that_fails_changes_nothing_and_is_recorded(svc, tmp_path):
    svc.state["bad"] = 0.5
    outcome, project = advance(tmp_path, svc, "role: shadow")
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 100)
    _, verdicts = records(project)
    shadows = [v["metrics"][1] for v in verdicts]
    assert shadows and all(m["role"] == "shadow" and m["verdict"] == "fail" for m in shadows)


def test_a_provider_that_errors_past_its_error_limit_stops_the_step_with_no_flag_change(svc, tmp_path):
    svc.state["stats_status"] = 503  # both metrics' provider is down: holds, never failures
    outcome, project = advance(tmp_path, svc, "error_limit: 3")
    assert (outcome.status, outcome.exit_code) == ("awaiting_approval", 3), outcome.message
    assert "new_path_errors: 3 provider errors in a row (error_limit 3)" in outcome.message
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 10)
    actions, verdicts = records(project)
    assert "flag_off" not in actions and len(verdicts) == 3
    assert all(v["verdict"] == "hold" for v in verdicts)


def test_a_guardrail_with_a_failure_limit_turns_the_flag_off_at_the_limit(svc, tmp_path):
    svc.state["bad"] = 0.5
    outcome, project = advance(tmp_path, svc, "failure_limit: 2")
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert svc.state["enabled"] is False
    _, verdicts = records(project)
    assert [v["verdict"] for v in verdicts] == ["hold", "fail"]


def test_validate_says_how_each_metric_decides(tmp_path):
    book = tmp_path / "p.yaml"
    book.write_text(PLAYBOOK.format(watched="role: signal, failure_limit: 3, initial_delay: 30s"))
    done = subprocess.run(
        [sys.executable, "-m", "rollout", "validate", str(book)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "gate g: errors (guardrail), new_path_errors (signal, failure_limit 3, initial_delay 30s)" in done.stdout
    book.write_text(PLAYBOOK.format(watched="role: sometimes"))
    bad = subprocess.run(
        [sys.executable, "-m", "rollout", "validate", str(book)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "gates.g.metrics.1.role" in bad.stderr


def test_a_playbook_without_the_new_keys_behaves_as_before(tmp_path):
    """Every new key is optional and defaults to today's behaviour."""
    book = tmp_path / "p.yaml"
    book.write_text(PLAYBOOK.format(watched="window: 10s"))
    metric = load_playbook(book, environ={"FLAG_TOKEN": "x"}).gates["g"].metrics[1]
    assert (metric.role, metric.failure_limit, metric.error_limit, metric.initial_delay) == ("guardrail", 1, None, 0)
    with pytest.raises(PlaybookError):
        book.write_text(PLAYBOOK.format(watched="failure_limit: 0"))
        load_playbook(book, environ={})


def test_guardrails_as_a_family_split_the_error_and_a_reading_at_the_edge_holds_instead_of_failing():
    each, family = gates(), GateSet.model_validate({**gates().model_dump(), "correction": "bonferroni"})
    assert [family.metric_confidence(m) for m in family.metrics] == pytest.approx([0.995, 0.995])
    assert [each.metric_confidence(m) for m in each.metrics] == [0.99, 0.99]
    # a signal and a shadow are not in the family: the two guardrails share the 1 %
    mixed = GateSet.model_validate(
        {
            **family.model_dump(),
            "metrics": [
                *family.model_dump()["metrics"],
                {**family.metrics[1].model_dump(), "metric": "s", "role": "signal"},
            ],
        }
    )
    assert [round(mixed.metric_confidence(m), 4) for m in mixed.metrics] == [0.995, 0.995, 0.99]
    # the first count of errors in 400 sends that fails a guardrail at 99 % holds at 99.5 %
    edge = next(e for e in range(400) if judge_readings(each, [GOOD, Reading(e / 400, 400, 10.0)]).verdict == FAIL)
    held = judge_readings(family, [GOOD, Reading(edge / 400, 400, 10.0)])
    assert held.verdict == HOLD and "99.5% always-valid interval" in held.metrics[1].reason
    assert judge_readings(family, [GOOD, Reading((edge + 20) / 400, 400, 10.0)]).verdict == FAIL
