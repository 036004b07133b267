"""Windows, freezes, start and cutoff through the real engine, against a team's service on loopback
(its admin flag endpoint and its stats), on a manual clock: a weekend, both DST changes, a freeze
that begins mid-hold, a breach while waiting, the cutoff, and the override through the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.util.clock import ManualClock
from tests.gates.test_metric_roles import PLAYBOOK as ROLES
from tests.support.engine_harness import DrivingClock
from tests.support.flagservice import TOKEN, FlagService, rollout_cli

PLAYBOOK = (
    ROLES[: ROLES.index("gates:")].replace("name: roles", "name: windows")
    + """\
gates:
  g:
    window: 30m
    min_samples: 1
    metrics:
      - {{metric: errors, provider: stats, kind: rate, query: {{url: /stats, value: bad, samples: n}}, target: 1%, alert: 5%}}
phases:
  - name: production
    environment: production
{schedule}
    steps:
      - kind: configure
        set: {{FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - kind: ramp
        percentages: [{percentages}]
        hold: {hold}
        interval: {interval}
        gate: g
        max_hold: 1h
        on_hold_timeout: {on_hold_timeout}
"""
)


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


class Clock(DrivingClock):
    """The engine's clock from ``start``; ``at(when, do)`` runs ``do`` at the first long sleep from ``when`` on."""

    def __init__(self, start: float) -> None:
        super().__init__()
        self.advance(start - self.time())

    def at(self, when: float, do: Callable[[], None]) -> None:
        done: list[bool] = []

        def hook() -> None:
            if not done and self.time() >= when:
                done.append(True)
                do()

        self.on_sleep.append(hook)


@pytest.fixture
def svc(flag_service, monkeypatch):
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    return flag_service.reset()


def project(
    tmp: Path,
    svc: FlagService,
    schedule: str = "",
    env_keys: str = "",
    percentages: str = "10, 50, 100",
    hold: str = "1h",
    interval: str = "30m",
    on_hold_timeout: str = "fail",
) -> Project:
    (tmp / "environments").mkdir(exist_ok=True)
    (tmp / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {svc.url}\n{env_keys}")
    book = tmp / "windows.yaml"
    book.write_text(
        PLAYBOOK.format(
            schedule=schedule, percentages=percentages, hold=hold, interval=interval, on_hold_timeout=on_hold_timeout
        )
    )
    return Project(book, tmp / "environments", tmp / "state" / "state.db")


def advance(proj: Project, clock: ManualClock) -> runner.RunOutcome:
    with runner.open_context(proj, "production", clock, QuietReporter()) as ctx:
        return runner.advance(ctx)


def audit(proj: Project, action: str | None = None) -> list[dict]:
    state = proj.state(read_only=True)
    try:
        return [a for a in state.audit_log("production", 10_000) if action is None or a["action"] == action]
    finally:
        state.close()


def verdicts(proj: Project) -> list[dict]:
    state = proj.state(read_only=True)
    try:
        return state.verdicts("production", 10_000)
    finally:
        state.close()


WEEKDAYS_BERLIN = "    windows: [Mon-Fri 09:00-17:00 Europe/Berlin]"


@pytest.mark.parametrize(
    ("start", "monday_open"),
    [
        (utc(2026, 1, 9, 14), utc(2026, 1, 12, 8)),  # an ordinary winter weekend: 09:00 CET
        (utc(2026, 3, 27, 14), utc(2026, 3, 30, 7)),  # clocks go forward on Sunday: 09:00 CEST
        (utc(2026, 10, 23, 13), utc(2026, 10, 26, 8)),  # clocks go back on Sunday: 09:00 CET
    ],
    ids=["winter", "dst-forward", "dst-back"],
)
def test_a_ramp_waits_out_the_weekend_guarded_and_moves_up_when_the_window_opens(svc, tmp_path, start, monday_open):
    proj = project(tmp_path, svc, WEEKDAYS_BERLIN)
    outcome = advance(proj, Clock(start))
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    writes = {a["detail"]["percent"]: a["ts"] for a in audit(proj, "ramp")}
    # 10 % and 50 % on Friday afternoon; the 50 % hold passes at 17:00 local, after the window closed
    assert writes[10] == pytest.approx(start, abs=5) and writes[50] == pytest.approx(start + 3600, abs=10)
    assert writes[100] == pytest.approx(monday_open, abs=1)
    # the weekend at 50 %: the gates were evaluated every interval (guarded), and recorded
    weekend = [v for v in verdicts(proj) if v["percent"] == 50 and writes[50] + 3600 < v["ts"] < monday_open]
    assert len(weekend) >= (monday_open - writes[50] - 3600) / 1800 - 2
    assert all(v["verdict"] == "pass" for v in weekend)
    [wait] = audit(proj, "window_wait")
    assert wait["detail"]["percent"] == 50 and "outside its windows" in wait["detail"]["why"][0]
    assert wait["detail"]["opens"].startswith(datetime.fromtimestamp(monday_open, UTC).strftime("Mon %Y-%m-%d"))
    assert audit(proj, "window_open")[0]["ts"] == pytest.approx(monday_open, abs=1)


def test_a_breach_outside_the_window_still_turns_the_flag_off(svc, tmp_path):
    proj = project(tmp_path, svc, WEEKDAYS_BERLIN)
    clock = Clock(utc(2026, 1, 9, 14))
    saturday = utc(2026, 1, 10, 12)
    clock.at(saturday, lambda: svc.state.update(bad=0.5))
    outcome = advance(proj, clock)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert svc.state["enabled"] is False
    [off] = audit(proj, "flag_off")
    assert saturday <= off["ts"] < saturday + 1800 + 60 and off["detail"]["previous_percent"] == 50
    assert [a["detail"]["percent"] for a in audit(proj, "ramp")] == [10, 50]


FREEZE_MID_HOLD = """\
    freeze:
      - {from: "2026-01-08T10:30", to: "2026-01-08T13:00", timezone: UTC, reason: database migration}"""


def test_a_freeze_that_begins_mid_hold_keeps_the_ramp_at_its_percentage_until_it_ends(svc, tmp_path):
    proj = project(tmp_path, svc, FREEZE_MID_HOLD, percentages="10, 25")
    outcome = advance(proj, Clock(utc(2026, 1, 8, 10)))
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    writes = {a["detail"]["percent"]: a["ts"] for a in audit(proj, "ramp")}
    assert writes[10] == pytest.approx(utc(2026, 1, 8, 10), abs=5)
    assert writes[25] == pytest.approx(utc(2026, 1, 8, 13), abs=1)  # not at 11:00, when its hold passed
    [wait] = audit(proj, "window_wait")
    assert wait["detail"]["why"] == ["frozen until Thu 2026-01-08 13:00Z: database migration"]


def test_a_breach_during_a_freeze_still_turns_the_flag_off(svc, tmp_path):
    proj = project(tmp_path, svc, FREEZE_MID_HOLD, percentages="10, 25")
    clock = Clock(utc(2026, 1, 8, 10))
    clock.at(utc(2026, 1, 8, 11, 45), lambda: svc.state.update(bad=0.5))
    outcome = advance(proj, clock)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert svc.state["enabled"] is False
    [off] = audit(proj, "flag_off")
    assert utc(2026, 1, 8, 11, 45) <= off["ts"] < utc(2026, 1, 8, 13)


def test_an_armed_phase_does_nothing_before_start_at(svc, tmp_path):
    proj = project(tmp_path, svc, "    start_at: 2026-01-08T13:00Z", percentages="10, 100", hold="30m", interval="15m")
    clock = Clock(utc(2026, 1, 8, 10))
    seen: list[tuple[bool, int]] = []
    clock.at(utc(2026, 1, 8, 12, 59), lambda: seen.append((svc.state["enabled"], svc.state["percent"])))
    outcome = advance(proj, clock)
    assert (outcome.status, outcome.exit_code) == ("completed", 0), outcome.message
    assert seen == [(False, 0)]
    assert audit(proj, "armed")[0]["detail"]["start_at"] == "Thu 2026-01-08 13:00Z"
    assert audit(proj, "configure")[0]["ts"] >= utc(2026, 1, 8, 13)


def test_the_cutoff_mid_hold_turns_the_flag_off(svc, tmp_path):
    proj = project(tmp_path, svc, "    cutoff: 2026-01-08T11:30Z")
    outcome = advance(proj, Clock(utc(2026, 1, 8, 10)))
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert "cutoff Thu 2026-01-08 11:30Z came before phase production completed" in outcome.message
    assert svc.state["enabled"] is False
    [off] = audit(proj, "flag_off")
    assert off["ts"] == pytest.approx(utc(2026, 1, 8, 11, 30), abs=1) and off["detail"]["previous_percent"] == 50


def test_a_phase_past_its_cutoff_is_not_started_and_nothing_changes(svc, tmp_path):
    proj = project(tmp_path, svc, env_keys="cutoff: 2026-01-08T09:00Z\n")  # the environment file's key
    outcome = advance(proj, Clock(utc(2026, 1, 8, 10)))
    assert (outcome.status, outcome.exit_code) == ("cutoff_passed", 3), outcome.message
    assert "was not started and nothing was changed" in outcome.message
    assert not audit(proj, "configure") and not audit(proj, "flag_intent")
    assert (svc.state["enabled"], svc.state["percent"]) == (False, 0)


def test_a_started_phase_advanced_again_after_its_cutoff_turns_the_flag_off_at_once(svc, tmp_path):
    proj = project(tmp_path, svc, "    cutoff: 2026-01-08T12:30Z", percentages="10, 100", on_hold_timeout="approve")
    svc.state["bad"] = 0.03  # between target and alert: the 10 % step holds, then waits for a person
    clock = Clock(utc(2026, 1, 8, 10))
    first = advance(proj, clock)
    assert (first.status, first.exit_code) == ("awaiting_approval", 3), first.message
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 10)
    clock.advance(utc(2026, 1, 8, 13) - clock.time())
    second = advance(proj, clock)
    assert (second.status, second.exit_code) == ("rolled_back", 1), second.message
    assert svc.state["enabled"] is False
    [off] = audit(proj, "flag_off")
    assert off["ts"] == pytest.approx(utc(2026, 1, 8, 13), abs=1)
    assert "cutoff Thu 2026-01-08 12:30Z came before phase production completed" in off["detail"]["reason"]


def test_a_playbook_without_the_keys_writes_no_schedule_record(svc, tmp_path):
    proj = project(tmp_path, svc, percentages="10, 100", hold="30m", interval="15m")
    outcome = advance(proj, Clock(utc(2026, 1, 10, 3)))  # 03:00 on a Saturday: no window, so any time
    assert outcome.exit_code == 0, outcome.message
    actions = {a["action"] for a in audit(proj)}
    assert not actions & {"window_wait", "window_open", "armed", "cutoff_passed", "window_override"}


FROZEN_NOW = """\
    freeze:
      - {from: 2000-01-01, to: 2099-12-30, timezone: UTC, reason: frozen for the test}"""


@pytest.mark.slow
def test_plan_says_what_is_frozen_and_the_override_moves_up_audited_and_rollback_is_never_blocked(svc, tmp_path):
    proj = project(tmp_path, svc, FROZEN_NOW, percentages="10, 100", hold="0.4s", interval="0.1s")
    planned = rollout_cli(proj, "plan", "--env", "production", "--json")
    assert planned.returncode == 0, planned.stderr
    schedule = json.loads(planned.stdout)["schedule"]
    assert schedule["open"] is False and schedule["frozen"][0]["reason"] == "frozen for the test"
    assert schedule["next_open"] is None  # not within a year (the next opening is looked for that far)
    shown = rollout_cli(proj, "plan", "--env", "production")
    assert "schedule: freeze: 2000-01-01 to 2099-12-30 UTC: frozen for the test" in shown.stdout
    assert (
        "schedule: now: not moving up: frozen until Thu 2099-12-31 00:00Z: frozen for the test; next opens not within "
        "a year" in shown.stdout
    )
    refused = rollout_cli(proj, "advance", "--env", "production", "--override-window")
    assert refused.returncode == 2 and "--override-window and --reason go together" in refused.stderr
    done = rollout_cli(proj, "advance", "--env", "production", "--override-window", "--reason", "hotfix INC-7")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 100)
    [override] = audit(proj, "window_override")
    assert override["detail"]["reason"] == "hotfix INC-7"
    assert override["detail"]["would_wait"] == ["frozen until Thu 2099-12-31 00:00Z: frozen for the test"]
    # the kill is never blocked by a freeze
    off = rollout_cli(proj, "rollback", "--env", "production", "--reason", "complaints")
    assert off.returncode == 0, off.stderr
    assert svc.state["enabled"] is False


def test_the_dashboard_says_when_the_next_window_opens_and_what_is_frozen(svc, tmp_path):
    from rollout.dashboard.app import snapshot

    keys = (
        f"{WEEKDAYS_BERLIN}\n    freeze: [{{days: Sat, hours: '00:00-24:00', timezone: UTC, reason: weekend on call}}]"
    )
    proj = project(tmp_path, svc, keys, percentages="10, 100", hold="30m", interval="15m")
    assert advance(proj, Clock(utc(2026, 1, 8, 10))).exit_code == 0  # Thursday 11:00 in Berlin: open
    [env] = snapshot(proj, now=utc(2026, 1, 10, 12))["environments"]  # Saturday noon
    schedule = env["schedule"]
    assert schedule["open"] is False and schedule["next_open"] == "Mon 2026-01-12 09:00 CET"
    assert schedule["frozen"] == [{"reason": "weekend on call", "until": "Sun 2026-01-11 01:00 CET"}]
