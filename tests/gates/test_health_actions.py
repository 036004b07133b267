"""Health actions: ``on_guardrail``, ``on_srm`` and ``on_no_traffic`` (rollback, hold, warn), judged
alone and through the real engine against a team's service on loopback. The defaults are today's;
a warning never hides another metric's breach and never stands before a flag-off."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.gates import FAIL, HOLD, PASS, Reading, judge_readings, sample_ratio, with_check
from rollout.playbook.model import GateSet
from rollout.util.clock import Clock, ManualClock, SystemClock
from tests.gates.test_metric_roles import BREACH, GOOD, PLAYBOOK, gates
from tests.support.flagservice import TOKEN, FlagService

QUIET = Reading(None, 0, 10.0)  # the provider answered: no event at all
MISMATCH = sample_ratio(100, 900, 50, 60.0)  # 10 % of the decided bookings in a 50 % cohort


def with_keys(**keys: object) -> GateSet:
    return GateSet.model_validate({**gates().model_dump(), **keys})


def test_the_defaults_are_todays_behaviour():
    g = gates()
    assert (g.on_guardrail, g.on_srm, g.on_no_traffic) == ("rollback", "rollback", "hold")
    assert judge_readings(g, [GOOD, BREACH]).verdict == FAIL
    assert with_check(judge_readings(g, [GOOD, GOOD]), MISMATCH).verdict == FAIL
    quiet = judge_readings(g, [GOOD, QUIET], elapsed=3600.0)
    assert quiet.verdict == HOLD and quiet.metrics[1].action is None and not quiet.warnings


def test_on_guardrail_hold_holds_and_says_so_and_warn_passes_with_the_warning():
    held = judge_readings(with_keys(on_guardrail="hold"), [GOOD, BREACH])
    assert held.verdict == HOLD and held.metrics[1].action == "hold"
    assert (
        "bad 50.00% > alert 5.00%" in held.summary
        and "on_guardrail: hold (the step holds; the flag stays)" in held.summary
    )
    warned = judge_readings(with_keys(on_guardrail="warn"), [GOOD, BREACH])
    assert warned.verdict == PASS and [m.metric for m in warned.warnings] == ["bad"]
    assert warned.metrics[1].verdict == FAIL  # shown as the failure it is
    assert "; warn bad 50.00% > alert 5.00%" in warned.summary and "(on_guardrail: warn)" in warned.summary


def test_on_srm_hold_and_warn():
    held = with_check(judge_readings(with_keys(on_srm="hold"), [GOOD, GOOD]), MISMATCH, "hold")
    assert held.verdict == HOLD and held.metrics[-1].action == "hold" and "on_srm: hold" in held.summary
    warned = with_check(judge_readings(with_keys(on_srm="warn"), [GOOD, GOOD]), MISMATCH, "warn")
    assert warned.verdict == PASS and "warn sample ratio mismatch" in warned.summary


def test_a_warning_never_hides_a_breach_of_another_metric():
    breach = judge_readings(with_keys(on_srm="warn"), [BREACH, GOOD])
    both = with_check(breach, MISMATCH, "warn")
    assert both.verdict == FAIL and both.summary.startswith("fail: ok 50.00% > alert 5.00%")
    assert "warn sample ratio mismatch" in both.summary
    quiet = judge_readings(with_keys(on_no_traffic="warn", no_traffic_grace=0), [BREACH, QUIET], elapsed=5.0)
    assert quiet.verdict == FAIL and quiet.metrics[1].action == "warn"


def test_on_no_traffic_after_its_grace():
    g = with_keys(on_no_traffic="rollback", no_traffic_grace="5m")
    assert judge_readings(g, [GOOD, QUIET], elapsed=299.0).verdict == HOLD
    late = judge_readings(g, [GOOD, QUIET], elapsed=301.0)
    assert late.verdict == FAIL and late.metrics[1].action == "rollback"
    assert "bad: no traffic 5m1s into the step (no_traffic_grace 5m); on_no_traffic: rollback" in late.summary
    # a provider error is not "no traffic": it holds (error_limit decides what comes of it)
    down = Reading(None, 0, 10.0, error="stats: HTTP 503")
    assert judge_readings(g, [GOOD, down], elapsed=999.0).verdict == HOLD
    # warn holds too: no data is never a pass
    warned = judge_readings(with_keys(on_no_traffic="warn", no_traffic_grace=0), [GOOD, QUIET], elapsed=1.0)
    assert warned.verdict == HOLD and warned.metrics[1].action == "warn" and "no data is never a pass" in warned.summary
    # per metric: its own action and grace win over the set's
    own = gates(on_no_traffic="rollback", no_traffic_grace="1s")
    assert judge_readings(own, [GOOD, QUIET], elapsed=2.0).verdict == FAIL
    assert judge_readings(own, [QUIET, GOOD], elapsed=2.0).verdict == HOLD  # the other keeps the set's hold


def test_bad_action_values_are_refused_with_their_field():
    with pytest.raises(ValueError, match="on_srm"):
        with_keys(on_srm="pause")
    with pytest.raises(ValueError, match="on_no_traffic"):
        gates(on_no_traffic="ignore")


# --- through the engine ------------------------------------------------------------------------------


@pytest.fixture
def svc(flag_service, monkeypatch):
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    return flag_service.reset()


#: the second metric reads `bad` over the `rate` field as its samples: 0 samples, no traffic
NO_TRAFFIC = ("value: bad, samples: n},\n", "value: bad, samples: rate},\n")
#: the first metric reads `bad` (a breach when it is high)
FIRST_BREACHES = ("value: ok, samples: n}, target", "value: bad, samples: n}, target")


def advance(
    tmp: Path, svc: FlagService, keys: str, *edits: tuple[str, str], clock: Clock | None = None
) -> tuple[runner.RunOutcome, Project]:
    """The roles playbook with ``keys`` on its gate set, a webhook for health warnings, and ``edits``."""
    (tmp / "environments").mkdir()
    (tmp / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {svc.url}\n")
    text = (
        PLAYBOOK.format(watched="window: 10s")
        .replace("    min_samples: 1\n", f"    min_samples: 1\n{keys}")
        .replace("gates:\n", f"notify:\n  - {{url: '{svc.url}/hook/ok', events: [health_warning]}}\ngates:\n")
    )
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    book = tmp / "health.yaml"
    book.write_text(text)
    project = Project(book, tmp / "environments", tmp / "state" / "state.db")
    with runner.open_context(project, "production", clock or SystemClock(), QuietReporter()) as ctx:
        return runner.advance(ctx), project


def actions(project: Project) -> list[dict]:
    state = project.state(read_only=True)
    try:
        return state.audit_log("production")
    finally:
        state.close()


def test_a_warning_is_recorded_notified_once_per_step_and_leaves_the_flag_alone(svc, tmp_path):
    svc.state["bad"] = 0.5
    outcome, project = advance(tmp_path, svc, "    on_guardrail: warn\n")
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 100)
    warned = [a for a in actions(project) if a["action"] == "health_warning"]
    assert [a["detail"]["percent"] for a in warned] == [10, 100]  # once per percentage, not per evaluation
    assert "new_path_errors 50.00% > alert 5.00%" in warned[0]["detail"]["warning"]
    hooks = [h for h in svc.hooks if h["body"]["event"] == "health_warning"]
    assert len(hooks) == 2 and "Health warning" in hooks[0]["body"]["text"]


def test_warnings_do_not_stand_before_a_breach_of_another_metric(svc, tmp_path):
    # new_path_errors sees no traffic (warned); errors breaches: the flag goes off all the same
    svc.state["bad"] = 0.5
    keys = "    on_no_traffic: warn\n    no_traffic_grace: 0s\n    on_srm: warn\n"
    outcome, project = advance(tmp_path, svc, keys, NO_TRAFFIC, FIRST_BREACHES)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert svc.state["enabled"] is False
    assert "errors 50.00% > alert 5.00%" in outcome.message
    [off] = [a for a in actions(project) if a["action"] == "flag_off"]
    quiet = off["detail"]["verdict"]["metrics"][1]
    assert (quiet["metric"], quiet["verdict"], quiet["action"]) == ("new_path_errors", "hold", "warn")


def test_no_traffic_past_its_grace_rolls_back_when_asked_to(svc, tmp_path):
    outcome, _ = advance(
        tmp_path,
        svc,
        "    on_no_traffic: rollback\n    no_traffic_grace: 0.2s\n",
        NO_TRAFFIC,
    )
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert "new_path_errors: no traffic" in outcome.message and "on_no_traffic: rollback" in outcome.message
    assert svc.state["enabled"] is False


def test_a_held_breach_still_ends_in_a_flag_off_at_its_holds_limit(svc, tmp_path):
    # on_guardrail: hold keeps the step where it is; its max_hold and on_hold_timeout: fail still apply
    svc.state["bad"] = 0.5
    outcome, _ = advance(tmp_path, svc, "    on_guardrail: hold\n", clock=ManualClock())
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert "held too long" in outcome.message and "on_guardrail: hold" in outcome.message
    assert svc.state["enabled"] is False
