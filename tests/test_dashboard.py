"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a real ramp."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from rollout.dashboard.app import create_dashboard
from rollout.engine.project import Project
from rollout.flags import FlagStore
from rollout.util.serving import ServerThread
from tests.harness import ADMIN_TOKEN, SANDBOX_TOKEN, wait_until
from tests.requirements_servers import chromium_binary, unavailable
from tests.test_cli_engine import project, start, state_of  # noqa: F401 - fixtures

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = chromium_binary() or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("ROLLOUT_TEST_ARTIFACTS", REPO / "test-artifacts"))
TOKEN = "dashboard-token-0123"


@pytest.fixture
def browser():
    if chromium_binary() is None:
        unavailable("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield launched
        launched.close()


def test_the_dashboard_shows_a_live_ramp_and_its_rollback_button_stops_it(project, browser, monkeypatch):  # noqa: F811
    cwd, service = project
    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    advance = start(cwd, "advance", "--env", "production")
    dashboard = ServerThread(
        create_dashboard(
            Project(cwd / "playbooks" / "whatsapp.yaml", cwd / "environments", cwd / ".rollout" / "state.db"), TOKEN
        )
    ).start()
    try:
        wait_until(lambda: FlagStore(service.env_file).state() == (True, 10), timeout=30, what="ramp at 10%")
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(dashboard.url)
        card = page.locator("[data-env=production]")
        card.locator("[data-role=status]", has_text="running").wait_for(timeout=15_000)
        card.locator("[data-role=chart] svg").wait_for(timeout=15_000)
        assert "flag on at 10%" in card.locator("[data-role=flag]").inner_text()
        # the page follows the record: more verdicts are recorded, the count on the page grows
        first = int(re.match(r"\d+", card.locator("[data-role=evaluations]").inner_text()).group())
        page.wait_for_function(
            "n => parseInt(document.querySelector('[data-env=production] [data-role=evaluations]').textContent) > n",
            arg=first,
            timeout=15_000,
        )
        # at a glance: the phase's steps with the ramp marked, its percentages with 10 % in force, the clocks
        assert card.locator("[data-role=steps] li[data-state=done]").all_inner_texts() == ["configure #1"]
        assert "ramp" in card.locator("[data-role=steps] li[data-state=current]").inner_text()
        assert card.locator("[data-role=in-force]").inner_text() == "10%"
        assert card.locator("[data-role=planned]").all_inner_texts() == ["50%"]
        assert re.fullmatch(r"(\d+m \d\ds|\d+\.\ds) left in the hold", card.locator("[data-role=hold]").inner_text())
        assert re.fullmatch(r"next evaluation in \d\.\ds", card.locator("[data-role=next]").inner_text())
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-running.png"), full_page=True)
        # Pause and continue: the same library calls as the CLI, by name, with a reason
        page.fill("#token", TOKEN)
        page.fill("#actor", "ana")
        page.once("dialog", lambda dialog: dialog.accept("a closer look at checkout"))
        card.locator("[data-action=pause]").click()
        card.locator("[data-role=paused]").wait_for(timeout=10_000)
        page.once("dialog", lambda dialog: dialog.accept("looks fine"))
        card.locator("[data-action=continue]").click()
        card.locator("[data-action=pause]").wait_for(timeout=10_000)
        steered = [(a["action"], a["actor"]) for a in state_of(cwd)[1] if a["action"] in ("paused", "continued")]
        assert steered == [("paused", "ana via dashboard"), ("continued", "ana via dashboard")]
        # Roll back: token and name, a reason asked for, the same library call as the CLI
        page.once("dialog", lambda dialog: dialog.accept("checkout errors seen in support"))
        card.locator("[data-action=rollback]").click()
        card.locator("[data-role=status]", has_text="rolled back").wait_for(timeout=20_000)
        assert service.metrics(1)["flag_enabled"] is False
        page.locator("#timeline", has_text="checkout errors seen in support").wait_for(timeout=10_000)
        page.screenshot(path=str(ARTIFACTS / "dashboard-rolled-back.png"), full_page=True)
        [off] = [a for a in state_of(cwd)[1] if a["action"] == "flag_off"]
        assert off["actor"] == "ana via dashboard" and off["detail"]["reason"] == "checkout errors seen in support"
        advance.wait(30)
        assert advance.returncode == 1  # the advance saw the rollback and stopped
    finally:
        advance.kill()
        advance.wait()
        dashboard.stop()


def test_without_a_token_the_dashboard_is_read_only(project, browser):  # noqa: F811
    cwd, _ = project
    dashboard = ServerThread(
        create_dashboard(
            Project(cwd / "playbooks" / "whatsapp.yaml", cwd / "environments", cwd / ".rollout" / "state.db"), None
        )
    ).start()
    try:
        answer = httpx.post(f"{dashboard.url}/api/rollback", json={"environment": "production", "reason": "x"})
        assert answer.status_code == 403 and "read-only" in answer.json()["error"]
        page = browser.new_page()
        page.goto(dashboard.url)
        page.locator("#readonly").wait_for(state="visible", timeout=10_000)
        assert page.locator("[data-action=rollback]").count() == 0
        wrong = httpx.post(f"{dashboard.url}/api/rollback", json={"environment": "Bad Name", "reason": "x"})
        assert wrong.status_code == 422
    finally:
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
