"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real ramp."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from rollout.dashboard.app import create_dashboard, project_name
from rollout.engine.project import Project
from rollout.flags import FlagStore
from rollout.util.serving import ServerThread
from tests.cli.test_cli_engine import project, start, state_of  # noqa: F401 - fixtures
from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, wait_until
from tests.support.looks import artifacts

#: starts real servers (or kills real processes): outside the fast loop; one worker runs the browser tests
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("chromium")]

TOKEN = "dashboard-token-0123"


def dashboard_of(cwd: Path, token: str | None) -> tuple[ServerThread, str]:
    """The dashboard of the project in ``cwd``, and its production page's path."""
    shown = Project(cwd / "playbooks" / "whatsapp.yaml", cwd / "environments", cwd / ".rollout" / "state.db")
    return ServerThread(create_dashboard(shown, token)).start(), f"/env/{project_name(shown)}/production"


def newest_verdict(page) -> int:
    return page.evaluate(
        "Math.max(0, ...[...document.querySelectorAll('[data-verdict-id]')].map(e => +e.dataset.verdictId))"
    )


def test_the_dashboard_shows_a_live_ramp_and_its_rollback_button_stops_it(project, chromium, monkeypatch, tmp_path):  # noqa: F811
    cwd, service = project
    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    advance = start(cwd, "advance", "--env", "production")
    dashboard, path = dashboard_of(cwd, TOKEN)
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    try:
        wait_until(lambda: FlagStore(service.env_file).state() == (True, 10), timeout=30, what="ramp at 10%")
        page = context.new_page()
        page.goto(dashboard.url)
        row = page.locator("#envs tr[data-env=production]")
        row.locator("[data-role=status]", has_text="running").wait_for(timeout=15_000)
        assert row.locator("[data-role=driver]").inner_text().startswith("terminal ")  # the advance drives it
        row.locator("a.env").click()
        page.wait_for_url(f"**{path}")
        page.locator("[data-panel=success_rate] svg").wait_for(timeout=15_000)
        page.wait_for_function(
            "document.querySelector('[data-role=flag]').textContent.startsWith('flag on at 10% (reported by the service')",
            timeout=15_000,
        )
        # the page follows the record, pushed: more verdicts are recorded, the newest shown grows
        first = newest_verdict(page)
        page.wait_for_function(
            "n => Math.max(0, ...[...document.querySelectorAll('[data-verdict-id]')].map(e => +e.dataset.verdictId)) > n",
            arg=first,
            timeout=15_000,
        )
        # at a glance: the phase's steps with the ramp now, its percentages with 10 % in force, the clocks
        states = page.locator("#steps > li").evaluate_all(
            "ls => ls.map(l => [l.dataset.state, l.querySelector('.label').textContent])"
        )
        assert (
            states[0] == ["done", "configure #1"]
            and states[1][0] == "current"
            and "ramp" in page.locator("#steps > li.current").inner_text()
        )
        assert page.locator("[data-role=in-force]").inner_text() == "10% ◀ in force"
        assert page.locator("[data-role=planned]").all_inner_texts() == ["50%"]
        assert re.fullmatch(
            r"held [\dhms. ]+ of [\dhms. ]+: [\dhms. ]+ left; next evaluation in \d+\.\ds",
            page.locator("[data-role=hold]").inner_text(),
        ), page.locator("[data-role=hold]").inner_text()
        page.screenshot(path=str(artifacts(tmp_path) / "dashboard-running.png"), full_page=True)
        # Pause and continue: the same library calls as the CLI, by name, with a reason
        page.fill("#token", TOKEN)
        page.fill("#actor", "ana")
        page.once("dialog", lambda dialog: dialog.accept("a closer look at checkout"))
        page.locator("[data-action=pause]").click()
        page.locator("#paused [data-role=paused]").wait_for(timeout=10_000)
        page.once("dialog", lambda dialog: dialog.accept("looks fine"))
        page.locator("[data-action=continue]").click()
        page.locator("[data-action=pause]").wait_for(timeout=10_000)
        steered = [(a["action"], a["actor"]) for a in state_of(cwd)[1] if a["action"] in ("paused", "continued")]
        assert steered == [("paused", "ana via dashboard"), ("continued", "ana via dashboard")]
        # Roll back: token and name, a reason asked for, the same library call as the CLI
        page.once("dialog", lambda dialog: dialog.accept("checkout errors seen in support"))
        page.locator("[data-action=rollback]").click()
        page.locator("#status [data-status=rolled_back]").wait_for(timeout=20_000)
        assert service.metrics(1)["flag_enabled"] is False
        page.locator("#audit", has_text="checkout errors seen in support").wait_for(timeout=10_000)
        assert "by ana via dashboard: checkout errors seen in support" in page.locator("#offbanner").inner_text()
        page.screenshot(path=str(artifacts(tmp_path) / "dashboard-rolled-back.png"), full_page=True)
        [off] = [a for a in state_of(cwd)[1] if a["action"] == "flag_off"]
        assert off["actor"] == "ana via dashboard" and off["detail"]["reason"] == "checkout errors seen in support"
        advance.wait(30)
        assert advance.returncode == 1  # the advance saw the rollback and stopped
    finally:
        context.close()
        advance.kill()
        advance.wait()
        dashboard.stop()


def test_without_a_token_the_dashboard_is_read_only(project, chromium):  # noqa: F811
    cwd, _ = project
    dashboard, path = dashboard_of(cwd, None)
    context = chromium.new_context()
    try:
        answer = httpx.post(f"{dashboard.url}/api/rollback", json={"environment": "production", "reason": "x"})
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
        page = context.new_page()
        page.goto(dashboard.url)
        page.locator("#readonly").wait_for(state="visible", timeout=10_000)
        page.goto(dashboard.url + path)
        page.locator("#readonly").wait_for(state="visible", timeout=10_000)
        assert page.locator("#actions").is_hidden() and page.locator("[data-action]:visible").count() == 0
        wrong = httpx.post(f"{dashboard.url}/api/rollback", json={"environment": "Bad Name", "reason": "x"})
        assert wrong.status_code == 422
    finally:
        context.close()
        dashboard.stop()


def test_approve_from_the_dashboard_runs_the_advance_it_approves(project, monkeypatch):  # noqa: F811
    cwd, _service = project
    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("HOLD", "0.3s")
    monkeypatch.setenv("MAX_HOLD", "0.3s")
    first = start(cwd, "advance", "--env", "production")
    first.communicate(timeout=60)
    assert first.returncode == 3 and state_of(cwd)[0].status == "awaiting_approval"  # no traffic: a person decides
    dashboard = ServerThread(
        create_dashboard(
            Project(cwd / "playbooks" / "whatsapp.yaml", cwd / "environments", cwd / ".rollout" / "state.db"), TOKEN
        )
    ).start()
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "X-Actor": "ana"}
        body = {"environment": "production", "reason": "numbers look fine in Grafana"}
        assert httpx.post(f"{dashboard.url}/api/approve", json=body).status_code == 401
        answer = httpx.post(f"{dashboard.url}/api/approve", json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        # the advance it started accepts the hold and moves the ramp on, under the approver's name
        wait_until(
            lambda: [a["detail"]["percent"] for a in state_of(cwd)[1] if a["action"] == "ramp"] == [10, 50],
            timeout=60,
            what="the approved advance to ramp to 50%",
        )
        audit = state_of(cwd)[1]
        [asked] = [a for a in audit if a["action"] == "approval_requested"]
        assert asked["actor"] == "ana via dashboard" and asked["detail"]["reason"] == "numbers look fine in Grafana"
        assert any(a["action"] == "approved" and a["actor"] == "ana via dashboard" for a in audit)
        wait_until(lambda: state_of(cwd)[2] is None, timeout=60, what="the approved advance to finish")
        # an environment that is not waiting for a person cannot be approved
        assert (
            httpx.post(
                f"{dashboard.url}/api/approve", json={**body, "environment": "staging"}, headers=headers
            ).status_code
            == 409
        )
    finally:
        dashboard.stop()
