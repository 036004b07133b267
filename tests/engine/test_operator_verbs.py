"""A person's hand on a running ramp: `rollout pause`, `continue`, `promote` and `promote --full`,
used from another terminal (or the dashboard) while an advance runs, against a real service."""

from __future__ import annotations

import subprocess
import threading

import httpx
import pytest

from rollout.console import QuietReporter
from rollout.dashboard.app import create_dashboard
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.util.clock import SystemClock
from rollout.util.errors import StateError
from rollout.util.serving import ServerThread
from tests.gates.test_metric_roles import PLAYBOOK
from tests.support.engine_harness import SteppedClock
from tests.support.flagservice import TOKEN, rollout_cli


@pytest.fixture
def service(flag_service):
    return flag_service.reset()


@pytest.fixture
def project(service, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {service.url}\n")
    book = tmp_path / "ops.yaml"
    book.write_text(PLAYBOOK.format(watched="window: 10s").replace("max_hold: 5s", "max_hold: 60s"))
    return Project(book, tmp_path / "environments", tmp_path / "state" / "state.db")


class Advance(threading.Thread):
    """``rollout advance`` running in another terminal, on a clock the test steps: started, it runs
    to its first wait at the ramp's first percentage (one evaluation made)."""

    def __init__(self, project: Project, clock: SteppedClock | None = None) -> None:
        super().__init__(daemon=True)
        self.project, self.outcome = project, None
        self.clock = clock or SteppedClock()

    def run(self) -> None:
        try:
            with runner.open_context(
                Project(self.project.playbook_path, self.project.environments_dir, self.project.state_path),
                "production",
                self.clock,
                QuietReporter(),
            ) as ctx:
                self.outcome = runner.advance(ctx)
        finally:
            self.clock.release()

    def begin(self) -> Advance:
        """Start it, and wait until it waits between two evaluations at the ramp's first percentage."""
        self.start()
        self.clock.waiting()
        return self

    def finish(self) -> runner.RunOutcome:
        """Let it run freely to its end."""
        self.clock.release()
        self.join(30)
        assert self.outcome is not None, "the advance did not end"
        return self.outcome


def evaluations(project: Project, percent: int) -> list[dict]:
    state = project.state(read_only=True)
    try:
        return [v for v in state.verdicts("production") if v["percent"] == percent]
    finally:
        state.close()


def actions(project: Project) -> list[str]:
    state = project.state(read_only=True)
    try:
        return [a["action"] for a in state.audit_log("production")]
    finally:
        state.close()


def test_a_paused_ramp_holds_past_its_hold_and_a_guardrail_breach_still_turns_the_flag_off(project, service):
    advance = Advance(project).begin()
    assert runner.pause(project, "production", "watching the dashboards", SystemClock()).exit_code == 0
    # the hold is 0.4 s at 0.1 s intervals: twenty evaluations (the first one interval after the write) are well
    # past it, every one a pass, and still at 10 %
    advance.clock.step(20)
    assert all(v["verdict"] == "pass" for v in evaluations(project, 10)) and len(evaluations(project, 10)) == 20
    assert service.state["percent"] == 10
    service.state["bad"] = 0.5  # the guardrail breaches while paused
    outcome = advance.finish()
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1)
    assert service.state["enabled"] is False
    assert [a for a in actions(project) if a in ("paused", "flag_off", "requests_cleared")] == [
        "paused",
        "flag_off",
        "requests_cleared",
    ]


def test_continue_lets_a_paused_ramp_go_on(project, service):
    advance = Advance(project).begin()
    runner.pause(project, "production", "a look first", SystemClock())
    advance.clock.step(5)
    assert service.state["percent"] == 10
    assert runner.unpause(project, "production", "looks fine", SystemClock()).status == "continued"
    outcome = advance.finish()
    assert outcome.status == "completed"
    assert (service.state["enabled"], service.state["percent"]) == (True, 100)


def test_promote_full_goes_to_100_now_and_says_so_loudly(project, service):
    advance = Advance(project).begin()
    runner.promote_now(project, "production", "incident 42: customers need it now", SystemClock(), full=True)
    outcome = advance.finish()
    assert outcome.status == "completed", outcome
    assert (service.state["enabled"], service.state["percent"]) == (True, 100)
    state = project.state(read_only=True)
    try:
        audit = state.audit_log("production")
    finally:
        state.close()
    applied = next(a for a in audit if a["action"] == "promotion_applied")
    assert applied["detail"]["full"] is True and applied["detail"]["percent"] == 10
    ramps = [a["detail"] for a in audit if a["action"] == "ramp"]
    assert [r["percent"] for r in ramps] == [10, 100] and ramps[-1]["full_promotion"] is True
    requested = next(a for a in audit if a["action"] == "promotion_requested")
    assert requested["detail"]["reason"] == "incident 42: customers need it now"


def test_promote_accepts_the_current_step(project, service):
    advance = Advance(project).begin()
    runner.pause(project, "production", "hold", SystemClock())
    runner.promote_now(project, "production", "seen enough at 10%", SystemClock())
    advance.clock.step(3)
    assert service.state["percent"] == 100  # the next step of [10, 100]: still paused there
    assert len(evaluations(project, 100)) >= 2
    runner.unpause(project, "production", "done", SystemClock())
    assert advance.finish().status == "completed"


def _holding_the_writer_lock(project: Project) -> None:
    """As a terminal's advance does (this test process is its live holder)."""
    state = project.state()
    try:
        state.acquire("production", SystemClock().time())
    finally:
        state.close()


@pytest.mark.slow
def test_promote_full_asks_for_confirmation(project):
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return rollout_cli(project, *args)

    refused = cli("promote", "--env", "production", "--full", "--reason", "now")
    assert refused.returncode == 2 and "asks for confirmation" in refused.stderr
    nobody = cli("promote", "--env", "production", "--full", "--yes", "--reason", "now")
    assert nobody.returncode == 2 and "nothing is running in production" in nobody.stderr
    assert "promotion_requested" not in actions(project)
    _holding_the_writer_lock(project)
    done = cli("promote", "--env", "production", "--full", "--yes", "--reason", "now")
    assert done.returncode == 0 and "PROMOTION TO 100% NOW" in done.stdout
    assert cli("pause", "--env", "production", "--reason", "x").returncode == 0
    assert cli("continue", "--env", "production", "--reason", "y").returncode == 0
    assert actions(project)[-3:] == ["promotion_requested", "paused", "continued"]


def test_the_dashboard_pauses_continues_and_promotes_behind_its_token(project):
    headers = {"Authorization": "Bearer dash-token-1234", "X-Actor": "ana"}
    body = {"environment": "production", "reason": "from the dashboard"}
    with ServerThread(create_dashboard(project, "dash-token-1234")) as dash:
        nobody = httpx.post(f"{dash.url}/api/pause", json=body, headers=headers)
        assert nobody.status_code == 409 and "nothing is running" in nobody.json()["error"]
        _holding_the_writer_lock(project)
        assert httpx.post(f"{dash.url}/api/pause", json=body).status_code == 401
        assert httpx.post(f"{dash.url}/api/pause", json=body, headers=headers).json()["status"] == "paused"
        assert httpx.post(f"{dash.url}/api/continue", json=body, headers=headers).json()["status"] == "continued"
        unconfirmed = httpx.post(f"{dash.url}/api/promote", json={**body, "full": True}, headers=headers)
        assert unconfirmed.status_code == 409 and "confirm" in unconfirmed.json()["error"]
        ok = httpx.post(f"{dash.url}/api/promote", json={**body, "full": True, "confirm": True}, headers=headers)
        assert ok.status_code == 200 and ok.json()["ok"] is True
    state = project.state(read_only=True)
    try:
        audit = state.audit_log("production")
    finally:
        state.close()
    assert [(a["action"], a["actor"]) for a in audit] == [
        ("paused", "ana via dashboard"),
        ("continued", "ana via dashboard"),
        ("promotion_requested", "ana via dashboard"),
    ]


def test_nothing_to_pause_in_a_rolled_back_environment(project, service):
    service.state.update(enabled=True, percent=10)
    runner.rollback(project, "production", "stop", SystemClock())
    with pytest.raises(StateError, match="is rolled back"):
        runner.pause(project, "production", "late", SystemClock())
    assert "paused" not in actions(project)


def test_a_promotion_asked_at_a_step_that_has_ended_is_dropped_not_handed_on(project, service):
    advance = Advance(project).begin()
    # asked at the run's step before this one (recorded as the CLI records it, with that step's place)
    state = project.state()
    try:
        current = state.get("production")
        state.set_control("production", SystemClock().time(), run_id=current.run_id, promote="full@production:0:0")
    finally:
        state.close()
    assert advance.finish().status == "completed"
    assert "promotion_dropped" in actions(project) and "promotion_applied" not in actions(project)
    assert len(evaluations(project, 10)) >= 2  # 10 % was held and judged, not skipped


def test_a_promotion_does_not_survive_a_rollback_nor_fire_after_resume(project, service):
    """Issue 26, item 1: promote --full asked at 10 %, the guardrail fails in the same interval: the
    flag goes off, the request is cleared (and said so), and the resumed run ramps from 10 % on its
    own gates, never jumping to 100 %."""
    advance = Advance(project).begin()
    runner.promote_now(project, "production", "customers need it", SystemClock(), full=True)
    runner.pause(project, "production", "and hold", SystemClock())
    service.state["bad"] = 0.5
    outcome = advance.finish()
    assert (outcome.status, service.state["enabled"]) == ("rolled_back", False)
    cleared = [a for a in audit_entries(project) if a["action"] == "requests_cleared"]
    assert len(cleared) == 1 and cleared[0]["detail"]["promotion"] == "full" and cleared[0]["detail"]["paused"]
    resumed = runner.resume(project, "production", "fixed", SystemClock())
    assert "cleared" in resumed.message and "promotion (full)" in resumed.message and "pause" in resumed.message
    service.state["bad"] = 0.0
    again = Advance(project).begin()
    assert service.state["percent"] == 10
    again.clock.step(2)
    assert service.state["percent"] == 10  # the old promotion is gone: 10 % is held on its gates
    assert again.finish().status == "completed"
    ramps = [a["detail"]["percent"] for a in audit_entries(project) if a["action"] == "ramp"]
    assert ramps == [10, 10, 100] and "promotion_applied" not in actions(project)


def test_requests_need_a_running_advance(project, service):
    """Issue 26: pause and promote on an idle or completed environment are refused, exit 2, nothing stored."""
    for verb in (runner.pause, runner.promote_now):
        with pytest.raises(StateError, match="nothing is running in production"):
            verb(project, "production", "nobody listens", SystemClock())
    advance = Advance(project).begin()
    assert advance.finish().status == "completed"
    with pytest.raises(StateError, match=r"nothing is running in production .*completed"):
        runner.pause(project, "production", "too late", SystemClock())
    assert not {"paused", "promotion_requested"} & set(actions(project))


def audit_entries(project: Project) -> list[dict]:
    state = project.state(read_only=True)
    try:
        return state.audit_log("production")
    finally:
        state.close()
