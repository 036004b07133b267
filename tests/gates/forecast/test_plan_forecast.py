"""``rollout plan`` with forecasts, as people run it: the shipped playbook at a given traffic, the
traffic read from the real service's last hour, bad options, nothing written; the dashboard's JSON."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from rollout.dashboard.app import create_dashboard
from rollout.engine.project import Project
from rollout.util.serving import ServerThread
from tests.cli.test_cli_engine import REPO, project, rollout  # noqa: F401 - fixtures


@pytest.mark.slow
def test_shipped_plan_forecasts_every_ramp_step_at_the_given_traffic(tmp_path):
    state = tmp_path / "state.db"
    shipped = {
        "ZAPTRA_SANDBOX_TOKEN": "x" * 10,
        "ROLLOUT_STATE": str(state),
        "ROLLOUT_PRODUCTION_ENV_FILE": str(tmp_path / "p.env"),
    }
    args = ("plan", "--env", "production", "--json", "--traffic", "50/s", "--breach", "success_rate=85%")
    proc = rollout(REPO, *args, **shipped)
    assert proc.returncode == 0, proc.stderr
    forecast = json.loads(proc.stdout)["forecast"]
    assert forecast["traffic_per_s"] == 50 and forecast["traffic_source"] == "given with --traffic"
    assert [s["percent"] for s in forecast["steps"]] == [10, 25, 50, 100]
    first = forecast["steps"][0]
    assert first["earliest_pass_s"] == 1800 and first["false_rollback_at_alert"]["bound"] == pytest.approx(0.05)
    named = [b for b in first["breaches"] if b["breach"] == "success_rate=85%"]
    assert named and named[0]["value"] == pytest.approx(0.85) and named[0]["catch_90_s"] > 0
    assert forecast["expected_duration_s"] == 4 * 1800
    # plan is read-only: no state file, no env file
    assert not state.exists() and not (tmp_path / "p.env").exists()
    text = rollout(REPO, "plan", "--env", "production", "--traffic", "50/s", **shipped)
    assert text.returncode == 0, text.stderr
    assert "forecast at 50/s (given with --traffic)" in text.stdout
    assert "error_rate at 10% (2x alert): caught by" in text.stdout
    assert "the ramp, healthy: about 2h" in text.stdout


@pytest.mark.slow
def test_plan_reads_the_traffic_from_the_service_and_warns_when_a_step_cannot_decide(project):  # noqa: F811
    tmp, service = project
    with httpx.Client(base_url=service.url, timeout=10) as http:
        for i in range(12):
            body = {
                "customer_id": f"c-{uuid.uuid4().hex[:8]}",
                "parent_name": "P",
                "child_name": "C",
                "phone": "+919876543210",
                "event_name": "E",
                "venue": "V",
                "event_date": "2030-01-01",
                "booking_ref": f"F-{i}-{uuid.uuid4().hex[:8]}",
                "amount": "10",
                "payment_method": "UPI",
            }
            assert http.post("/api/bookings", json=body).status_code == 201
    proc = rollout(tmp, "plan", "--env", "production", "--json")
    assert proc.returncode == 0, proc.stderr
    forecast = json.loads(proc.stdout)["forecast"]
    assert forecast["traffic_source"] == "the embedded service's booking requests over the last hour"
    assert 0 < forecast["traffic_per_s"] < 1
    # a dozen bookings an hour: 10 % of them never bring 5 samples into a 30 s window
    ten = forecast["steps"][0]
    assert ten["earliest_pass_s"] is None
    assert any("cannot decide" in w and "min_samples to at most" in w for w in forecast["warnings"])
    text = rollout(tmp, "plan", "--env", "production")
    assert "warning: 10% at" in text.stdout and "CANNOT DECIDE" in text.stdout


@pytest.mark.slow
def test_plan_refuses_bad_forecast_options_in_one_line(project):  # noqa: F811
    tmp, _ = project
    for args, said in (
        (("--traffic", "lots"), "--traffic: expected a rate like 50/s"),
        (("--traffic", "5/s", "--breach", "nope=3%"), "--breach 'nope=3%': the ramp's gates judge no 'nope'"),
        (("--traffic", "5/s", "--breach", "success_rate"), "write METRIC=VALUE"),
    ):
        proc = rollout(tmp, "plan", "--env", "production", *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert said in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_the_dashboard_serves_the_forecast_read_only(project, monkeypatch):  # noqa: F811
    tmp, _ = project
    monkeypatch.chdir(tmp)
    from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN

    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    proj = Project(tmp / "playbooks" / "whatsapp.yaml", tmp / "environments", tmp / ".rollout" / "state.db")
    with ServerThread(create_dashboard(proj, None)) as dash:
        answer = httpx.get(f"{dash.url}/api/forecast/production?traffic=20/s", timeout=30)
        assert answer.status_code == 200, answer.text
        steps = answer.json()["steps"]
        assert [s["percent"] for s in steps] == [10, 50] and steps[0]["earliest_pass_s"] is not None
        bad = httpx.get(f"{dash.url}/api/forecast/nowhere?traffic=20/s", timeout=30)
        assert bad.status_code == 400 and "no phase runs in environment 'nowhere'" in bad.json()["error"]
    assert not (tmp / ".rollout" / "state.db").exists()


@pytest.mark.slow
def test_the_environment_page_shows_each_ramp_steps_forecast(project, monkeypatch, chromium):  # noqa: F811
    tmp, service = project
    monkeypatch.chdir(tmp)
    from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, booking_body

    monkeypatch.setenv("ZAPTRA_API_TOKEN", SANDBOX_TOKEN)
    monkeypatch.setenv("ROLLOUT_ADMIN_TOKEN", ADMIN_TOKEN)
    with httpx.Client(base_url=service.url, timeout=10) as http:
        for i in range(12):  # a dozen bookings in the last hour: the traffic the forecast reads
            assert http.post("/api/bookings", json=booking_body(900 + i)).status_code == 201
    proj = Project(tmp / "playbooks" / "whatsapp.yaml", tmp / "environments", tmp / ".rollout" / "state.db")
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    with ServerThread(create_dashboard(proj, None)) as dash:
        page = context.new_page()
        page.goto(f"{dash.url}/env/{proj.playbook().name}/production")
        box = page.locator("#steps [data-role=forecast]").first
        box.wait_for(timeout=30_000)
        said = box.inner_text()
        # the ramp's percentages, each with what its gates need at this traffic: too little to decide
        assert "10%" in said and "50%" in said and "no pass within its hold" in said and "WARNING" in said, said
    context.close()
