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
from tests.flagservice import TOKEN, rollout_cli
from tests.harness import wait_until
from tests.test_metric_roles import PLAYBOOK


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
    """``rollout advance`` running in another terminal."""

    def __init__(self, project: Project) -> None:
        super().__init__(daemon=True)
        self.project, self.outcome = project, None

    def run(self) -> None:
        with runner.open_context(
            Project(self.project.playbook_path, self.project.environments_dir, self.project.state_path),
            "production",
            SystemClock(),
            QuietReporter(),
        ) as ctx:
            self.outcome = runner.advance(ctx)


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


@pytest.mark.slow
def test_a_paused_ramp_holds_past_its_hold_and_a_guardrail_breach_still_turns_the_flag_off(project, service):
    assert runner.pause(project, "production", "watching the dashboards", SystemClock()).exit_code == 0
    advance = Advance(project)
    advance.start()
    # the hold is 0.4 s: twenty evaluations at 10 % are well past it, every one a pass, and still at 10 %
    wait_until(lambda: len(evaluations(project, 10)) >= 20, timeout=30, what="evaluations while paused")
    assert all(v["verdict"] == "pass" for v in evaluations(project, 10)) and service.state["percent"] == 10
    service.state["bad"] = 0.5  # the guardrail breaches while paused
    advance.join(30)
    assert advance.outcome is not None and (advance.outcome.status, advance.outcome.exit_code) == ("rolled_back", 1)
    assert service.state["enabled"] is False
    assert [a for a in actions(project) if a in ("paused", "flag_off")] == ["paused", "flag_off"]


def test_continue_lets_a_paused_ramp_go_on(project, service):
    runner.pause(project, "production", "a look first", SystemClock())
    advance = Advance(project)
    advance.start()
    wait_until(lambda: len(evaluations(project, 10)) >= 5, timeout=30, what="evaluations while paused")
    assert runner.unpause(project, "production", "looks fine", SystemClock()).status == "continued"
    advance.join(30)
    assert advance.outcome is not None and advance.outcome.status == "completed"
    assert (service.state["enabled"], service.state["percent"]) == (True, 100)


def test_promote_full_goes_to_100_now_and_says_so_loudly(project, service):
    runner.pause(project, "production", "hold it", SystemClock())
    advance = Advance(project)
    advance.start()
    wait_until(lambda: len(evaluations(project, 10)) >= 2, timeout=30, what="an evaluation at 10%")
    runner.promote_now(project, "production", "incident 42: customers need it now", SystemClock(), full=True)
    advance.join(30)
    assert advance.outcome is not None and advance.outcome.status == "completed", advance.outcome
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
    runner.pause(project, "production", "hold", SystemClock())
    advance = Advance(project)
    advance.start()
    wait_until(lambda: len(evaluations(project, 10)) >= 2, timeout=30, what="an evaluation at 10%")
    runner.promote_now(project, "production", "seen enough at 10%", SystemClock())
    wait_until(lambda: len(evaluations(project, 100)) >= 2, timeout=30, what="the next percentage")
    assert service.state["percent"] == 100  # the next step of [10, 100]: still paused there
    runner.unpause(project, "production", "done", SystemClock())
    advance.join(30)
    assert advance.outcome is not None and advance.outcome.status == "completed"


@pytest.mark.slow
def test_promote_full_asks_for_confirmation(project):
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return rollout_cli(project, *args)

    refused = cli("promote", "--env", "production", "--full", "--reason", "now")
    assert refused.returncode == 2 and "asks for confirmation" in refused.stderr
    assert "promotion_requested" not in actions(project)
    done = cli("promote", "--env", "production", "--full", "--yes", "--reason", "now")
    assert done.returncode == 0 and "PROMOTION TO 100% NOW" in done.stdout
    assert cli("pause", "--env", "production", "--reason", "x").returncode == 0
    assert cli("continue", "--env", "production", "--reason", "y").returncode == 0
    assert actions(project)[-3:] == ["promotion_requested", "paused", "continued"]


def test_the_dashboard_pauses_continues_and_promotes_behind_its_token(project):
    headers = {"Authorization": "Bearer dash-token-1234", "X-Actor": "ana"}
    body = {"environment": "production", "reason": "from the dashboard"}
    with ServerThread(create_dashboard(project, "dash-token-1234")) as dash:
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
    # asked before the run reaches its ramp: it must not promote the ramp when it gets there
    runner.promote_now(project, "production", "meant for another step", SystemClock(), full=True)
    advance = Advance(project)
    advance.start()
    advance.join(30)
    assert advance.outcome is not None and advance.outcome.status == "completed"
    assert "promotion_dropped" in actions(project) and "promotion_applied" not in actions(project)
    assert len(evaluations(project, 10)) >= 2  # 10 % was held and judged, not skipped
