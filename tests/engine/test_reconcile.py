"""The engine's decision, every branch, with fake verdicts (no I/O); and whole runs of the engine
against the fakes of :mod:`rollout.testing`, with no service at all."""

from __future__ import annotations

import dataclasses

import pytest

from rollout.engine import runner
from rollout.engine.reconcile import Act, Look, decide_observation, decide_ramp
from rollout.engine.state import Control, EnvState, StateStore
from rollout.gates import FAIL, HOLD, PASS, Verdict
from rollout.playbook.model import Playbook
from rollout.testing import MemoryFlags, ScriptedProvider, fake_context
from rollout.util.clock import ManualClock

NOW = 1_000.0
LOOK = Look(hold=60.0, max_hold=30.0, interval=5.0)
PERCENTAGES = [10, 25, 100]


def row(**fields) -> EnvState:
    base = EnvState("production", "running", "p", 1, 0, True, NOW - 10, 10, True, None, None, NOW, "run-1")
    return dataclasses.replace(base, **fields)


def verdict(kind: str = PASS, stop: str | None = None) -> Verdict:
    return Verdict(kind, (), error="the figures", stop=stop)


def control(paused: bool = False, promote: str | None = None, run: str | None = "run-1") -> Control:
    return Control(paused, promote, run)


NONE = Control(False, None)


def test_a_ramp_past_its_last_percentage_is_done():
    assert decide_ramp(row(ramp_index=3), PERCENTAGES, LOOK, None, NONE, NOW).act == Act.DONE


def test_a_percentage_not_applied_is_written_first():
    decision = decide_ramp(row(ramp_index=1, ramp_applied=False), PERCENTAGES, LOOK, None, NONE, NOW)
    assert (decision.act, decision.percent) == (Act.WRITE, 25)


def test_an_applied_percentage_is_measured_before_anything_is_decided():
    assert decide_ramp(row(), PERCENTAGES, LOOK, None, NONE, NOW).act == Act.MEASURE


@pytest.mark.parametrize(
    "asked",
    [
        control(paused=True),
        control(promote="full@p:1:0"),
        control(promote="step@p:1:0"),
        NONE,
    ],
)
def test_a_failing_guardrail_turns_the_flag_off_whatever_was_asked_or_scheduled(asked):
    decision = decide_ramp(row(), PERCENTAGES, LOOK, verdict(FAIL), asked, NOW, may_move_up="outside the window")
    assert decision.act == Act.TURN_OFF


def test_a_stop_for_a_person_comes_before_any_request():
    decision = decide_ramp(
        row(), PERCENTAGES, LOOK, verdict(HOLD, stop="signal x failed"), control(promote="full@p:1:0"), NOW
    )
    assert (decision.act, decision.reason) == (Act.STOP, "signal x failed")


def test_a_promotion_asked_at_this_step_of_this_run_applies():
    assert decide_ramp(row(), PERCENTAGES, LOOK, verdict(HOLD), control(promote="step@p:1:0"), NOW).act == Act.PROMOTE
    full = decide_ramp(row(), PERCENTAGES, LOOK, verdict(HOLD), control(promote="full@p:1:0"), NOW)
    assert full.act == Act.PROMOTE_FULL


def test_a_promotion_asked_at_another_step_is_dropped_and_the_step_decides_on_its_own():
    decision = decide_ramp(row(), PERCENTAGES, LOOK, verdict(HOLD), control(promote="full@p:0:0"), NOW)
    assert (decision.act, decision.drop_promotion) == (Act.WAIT, True)
    late = decide_ramp(
        row(observe_started=NOW - 61), PERCENTAGES, LOOK, verdict(PASS), control(promote="full@p:0:0"), NOW
    )
    assert (late.act, late.drop_promotion) == (Act.ACCEPT, True)


def test_requests_of_another_run_are_never_applied():
    other = control(paused=True, promote="full@p:1:0", run="run-0")
    decision = decide_ramp(row(observe_started=NOW - 61), PERCENTAGES, LOOK, verdict(PASS), other, NOW)
    assert decision.act == Act.ACCEPT
    assert (
        decide_ramp(row(), PERCENTAGES, LOOK, verdict(HOLD), control(promote="full@p:1:0", run=None), NOW).act
        == Act.WAIT
    )


def test_a_pause_holds_a_passing_step_past_its_hold():
    decision = decide_ramp(row(observe_started=NOW - 600), PERCENTAGES, LOOK, verdict(PASS), control(paused=True), NOW)
    assert (decision.act, decision.next_at) == (Act.WAIT, NOW + LOOK.interval)


def test_a_passing_step_moves_up_once_held_long_enough():
    assert decide_ramp(row(observe_started=NOW - 59), PERCENTAGES, LOOK, verdict(PASS), NONE, NOW).act == Act.WAIT
    assert decide_ramp(row(observe_started=NOW - 60), PERCENTAGES, LOOK, verdict(PASS), NONE, NOW).act == Act.ACCEPT


def test_outside_a_window_a_passing_step_waits_and_keeps_watching():
    decision = decide_ramp(row(observe_started=NOW - 600), PERCENTAGES, LOOK, verdict(PASS), NONE, NOW, "window closed")
    assert (decision.act, decision.held_by_schedule, decision.next_at) == (Act.WAIT, "window closed", NOW + 5)


def test_a_step_that_cannot_decide_times_out_after_its_extra_hold():
    assert decide_ramp(row(observe_started=NOW - 89), PERCENTAGES, LOOK, verdict(HOLD), NONE, NOW).act == Act.WAIT
    decision = decide_ramp(row(observe_started=NOW - 90), PERCENTAGES, LOOK, verdict(HOLD), NONE, NOW)
    assert decision.act == Act.TIMEOUT and "held too long" in decision.reason


def test_without_requests_a_gate_step_in_ci_only_judges():
    assert decide_observation(row(), NOW - 600, LOOK, verdict(PASS), None, NOW).act == Act.ACCEPT
    assert decide_observation(row(), NOW, LOOK, verdict(HOLD), None, NOW).next_at == NOW + 5


# --- whole runs against the fakes: the engine without any service ------------------------------------

PLAYBOOK = {
    "version": 1,
    "name": "fakes",
    "target": {"kind": "http", "health": {"url": "/healthz", "expect": {"status": 200}}},
    "flag": {"backend": "http", "variable": "FEATURE_ON", "percent_variable": "FEATURE_SHARE", "url": "/flag"},
    "providers": {"stats": {"kind": "http"}},
    "gates": {
        "g": {
            "window": "10s",
            "min_samples": 10,
            "metrics": [
                {
                    "metric": "errors",
                    "provider": "stats",
                    "kind": "rate",
                    "query": {"url": "/stats", "value": "e", "samples": "n"},
                    "target": "1%",
                    "alert": "5%",
                }
            ],
        }
    },
    "phases": [
        {
            "name": "production",
            "environment": "production",
            "steps": [
                {"kind": "configure", "set": {"FEATURE_ON": "false", "FEATURE_SHARE": "0"}},
                {
                    "kind": "ramp",
                    "percentages": [10, 50, 100],
                    "hold": "30s",
                    "interval": "5s",
                    "gate": "g",
                    "max_hold": "30s",
                    "on_hold_timeout": "fail",
                },
            ],
        }
    ],
}


def run(tmp_path, errors) -> tuple[runner.RunOutcome, MemoryFlags, list[str]]:
    playbook = Playbook.model_validate(PLAYBOOK)
    flags = MemoryFlags()
    state = StateStore(tmp_path / "state.db")
    try:
        with fake_context(
            playbook, state, ManualClock(), ScriptedProvider({"errors": errors}), flags, incidents_dir=tmp_path
        ) as ctx:
            outcome = runner.advance(ctx)
        return outcome, flags, [a["action"] for a in state.audit_log("production")]
    finally:
        state.close()


def test_a_healthy_ramp_completes_on_the_fakes(tmp_path):
    outcome, flags, actions = run(tmp_path, 0.0)
    assert outcome.status == "completed"
    assert flags.writes[-3:] == [(True, 10), (True, 50), (True, 100)]
    assert actions.count("ramp") == 3 and "flag_off" not in actions


def test_a_breach_at_50_percent_turns_the_flag_off_on_the_fakes(tmp_path):
    outcome, flags, actions = run(tmp_path, lambda percent: 0.2 if percent == 50 else 0.0)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1)
    assert flags.state() == (False, 50) and flags.writes[-1] == (False, 50)
    assert actions[-4:-1] == ["flag_intent", "flag_off", "flag_off_confirmed"]


def test_a_flag_backend_that_fails_the_off_is_recorded_as_failed(tmp_path):
    flags = MemoryFlags()
    playbook = Playbook.model_validate(PLAYBOOK)
    state = StateStore(tmp_path / "state.db")

    def breach(percent):
        if percent == 50:
            flags.fail = "the flag service is down"
            return 0.2
        return 0.0

    try:
        with fake_context(
            playbook, state, ManualClock(), ScriptedProvider({"errors": breach}), flags, incidents_dir=tmp_path
        ) as ctx:
            outcome = runner.advance(ctx)
        assert (outcome.status, outcome.exit_code) == ("flag_off_failed", 1)
        assert "flag_off_failed" in [a["action"] for a in state.audit_log("production")]
    finally:
        state.close()
