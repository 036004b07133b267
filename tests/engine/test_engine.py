"""The engine against the real service and sandbox: ramps, breaches, holds, approvals, rollbacks."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.engine import runner
from rollout.util.clock import SystemClock
from tests.support.engine_harness import EngineWorld, customers_in
from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN


@pytest.fixture
def world(tmp_path, sandbox, monkeypatch):
    made = []

    def make(**kw) -> EngineWorld:
        w = EngineWorld(tmp_path, sandbox, **kw)
        w.environ(monkeypatch)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.mark.slow
def test_healthy_ramp_reaches_100_percent(world):
    w = world()
    w.clock.on_sleep.append(w.traffic(40))
    outcome = w.advance()
    assert (outcome.status, outcome.exit_code) == ("completed", 0)
    assert w.flags.state() == (True, 100)
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10, 25, 50, 100]
    state = w.project.state()
    verdicts = state.verdicts("production")
    state.close()
    assert verdicts[-1]["verdict"] == "pass" and verdicts[-1]["percent"] == 100
    assert all({"metric", "value", "target", "alert", "samples"} <= set(m) for m in verdicts[-1]["metrics"])
    # the sample-ratio check ran on the real service's decisions, and found the bucketing sound
    ratios = [m for v in verdicts for m in v["metrics"] if m["metric"] == "sample_ratio"]
    assert ratios and all(m["verdict"] == "pass" for m in ratios), ratios[:3]
    # the service obeyed every step: at 100% every customer is messaged
    assert w.service.metrics(1)["rollout_percent"] == 100


def test_breach_at_25_percent_turns_the_flag_off_and_the_service_stops_sending(world, sandbox):
    w = world()
    w.breach_at(25)
    outcome = w.advance()
    trail = (outcome.as_dict(), [(a["action"], a["detail"]) for a in w.audit()])
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), trail
    assert "fail" in outcome.message and "alert" in outcome.message
    assert w.flags.state()[0] is False and w.env_state().status == "rolled_back"
    [off] = w.audit("flag_off")
    assert off["detail"]["automatic"] is True and off["detail"]["previous_percent"] == 25
    assert any(m["verdict"] == "fail" and m["samples"] >= 10 for m in off["detail"]["verdict"]["metrics"])
    assert w.audit("flag_off_confirmed")  # the engine saw the service take the flag in
    assert w.service.metrics(1)["flag_enabled"] is False
    # a pre-filled incident report was written at once, with the breach's figures and nothing secret
    [written] = w.audit("incident_report")
    report = Path(written["detail"]["path"]).read_text()
    assert "SEV-2" in report and "flag off" in report.lower()
    assert "| success_rate | fail |" in report or "| error_rate | fail |" in report
    assert "while 25% of customers had WhatsApp" in report
    for secret in (SANDBOX_TOKEN, ADMIN_TOKEN):
        assert secret not in report
    assert "9876543210" not in report
    if "| booking | phone |" in report:  # sample rows exist once some failed send has finished by the kill
        assert "+91******3210" in report
    assert "## Root cause" in report and "## Action items" in report
    # the service obeys: new bookings are not sent to the provider any more
    w.clock.on_sleep.clear()
    sent_before = len(sandbox.messages())
    requests_before = sandbox.stats()["requests"]
    w.book(customers_in(0, 25, 10))
    assert len(sandbox.messages()) == sent_before and sandbox.stats()["requests"] == requests_before
    assert w.service.metrics(5)["skipped_by_reason"]["flag_off"] >= 10
    # and a rolled-back environment does not advance until a person resumes it
    again = w.advance()
    assert (again.status, again.exit_code) == ("rolled_back", 1) and "rollout resume" in again.message


@pytest.mark.slow
def test_a_hold_does_not_advance_and_then_waits_for_a_person(world, sandbox):
    w = world(extra_metrics="")
    sandbox.faults(reject_phones=["919876543211"])
    good, bad = customers_in(0, 10, 13), customers_in(0, 10, 1)

    def in_cohort_traffic() -> None:
        w.book(good)  # the same customers each tick: all inside 10%
        w.book(bad, phone="+919876543211")  # 1 in 14 undeliverable: 92.9%, between alert and target

    w.clock.on_sleep.append(in_cohort_traffic)
    outcome = w.advance()
    assert (outcome.status, outcome.exit_code) == ("awaiting_approval", 3)
    assert "held too long" in outcome.message and "between target 95.00% and alert 90.00%" in outcome.message
    assert w.flags.state() == (True, 10)  # never went past 10%
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10]
    # a person accepts the hold: the ramp goes on to 25%, applying 10% no second time
    sandbox.faults(reject_phones=[])
    w.clock.on_sleep[:] = [w.traffic(40)]
    outcome = w.advance(approve=True)
    assert outcome.status == "completed"
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10, 25, 50, 100]


@pytest.mark.slow
def test_approval_pauses_and_resumes(world):
    w = world(before_ramp="      - {kind: approve, name: go, message: ship it}", percentages="100")
    w.clock.on_sleep.append(w.traffic(40))
    outcome = w.advance()
    assert (outcome.status, outcome.exit_code) == ("awaiting_approval", 3)
    assert w.flags.state()[0] is False and w.env_state().status == "awaiting_approval"
    outcome = w.advance(approve=True)
    assert outcome.status == "completed" and w.flags.state() == (True, 100)
    [approved] = w.audit("approved")
    assert approved["actor"]


def test_rollback_during_an_advance_wins(world):
    w = world()
    w.clock.on_sleep.append(w.traffic(40))

    def rollback_at_25() -> None:
        if w.flags.state() == (True, 25) and not w.audit("flag_off"):
            runner.rollback(w.project, "production", "customer complaints", SystemClock(), who="oncall")

    w.clock.on_sleep.append(rollback_at_25)
    outcome = w.advance()
    trail = (outcome.as_dict(), [(a["action"], a["detail"]) for a in w.audit()])
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), trail
    assert "rolled back meanwhile" in outcome.message, trail
    assert w.flags.state()[0] is False  # the ramp did not turn it back on
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10, 25]
    [off] = w.audit("flag_off")
    assert off["actor"] == "oncall" and off["detail"]["automatic"] is False


def test_a_ramp_write_after_a_rollback_is_refused(world):
    """The race itself: rollback lands between two evaluations, right before the next write."""
    w = world(percentages="10, 25", hold="2s")
    w.clock.on_sleep.append(w.traffic(40))
    calls = []

    def rollback_late_at_10() -> None:
        calls.append(1)
        if w.flags.state() == (True, 10) and len(calls) == 2:
            runner.rollback(w.project, "production", "operator", SystemClock())

    w.clock.on_sleep.append(rollback_late_at_10)
    outcome = w.advance()
    assert outcome.status == "rolled_back"
    assert w.flags.state() == (False, 10)
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10]


def test_no_data_is_never_a_pass(world):
    w = world(percentages="10", hold="2s", max_hold="2s", on_hold_timeout="fail")
    outcome = w.advance()  # nobody books: no samples at all
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1)
    assert "no data" in outcome.message and "never a pass" in outcome.message
    assert w.flags.state()[0] is False


@pytest.mark.slow
def test_watch_keeps_evaluating_and_turns_the_flag_off_on_a_breach(world, sandbox):
    from rollout.console import QuietReporter
    from rollout.engine.project import open_context
    from rollout.engine.runner import watch

    w = world(percentages="100", hold="2s")
    w.clock.on_sleep.append(w.traffic(40))
    assert w.advance().status == "completed"
    with open_context(w.project, "production", w.clock, QuietReporter()) as ctx:
        calm = watch(ctx, max_evaluations=3)
    assert (calm.status, calm.exit_code) == ("watching", 0) and w.flags.state() == (True, 100)
    sandbox.faults(error_rate=1.0, error_message="(#131026) Message Undeliverable.")
    with open_context(w.project, "production", w.clock, QuietReporter()) as ctx:
        breach = watch(ctx, max_evaluations=50)
    assert (breach.status, breach.exit_code) == ("rolled_back", 1) and "success_rate" in breach.message
    assert w.flags.state()[0] is False
    [off] = w.audit("flag_off")
    assert off["detail"]["automatic"] is True and off["detail"]["reason"].startswith("watch: fail")
    assert w.audit("incident_report")
