"""The kill path and secrets on every backend: flag endpoints that echo tokens, hang, or answer 200
and stay on; commands that carry a token; a provider answering 1e308; an unreachable flag
database; webhooks that hang or have no token; phones in a reason. Each against a real server on
loopback and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout.console import QuietReporter
from rollout.dashboard.app import create_dashboard, snapshot
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.gates import HOLD, Reading, judge_readings
from rollout.notify import Notifier, slack_text
from rollout.playbook.model import GateSet
from rollout.util.clock import SystemClock
from rollout.util.redact import Redactor
from rollout.util.serving import ServerThread, free_port
from tests.support.flagservice import TOKEN, FlagService, rollout_cli

WRONG = "wrong-pasted-secret-51d2"
DEPLOY = "deploy-token-c0ffee-99"
PHONE = "+919876543210"

PLAYBOOK = """\
version: 1
name: trust
target:
  kind: http
  health: {{url: /healthz, expect: {{status: 200}}}}
flag:
  backend: {backend}
  variable: FEATURE_ON
  percent_variable: FEATURE_SHARE
{flag}
providers:
  stats: {{kind: http}}
gates:
  g:
    window: 10s
    min_samples: 1
    metrics:
      - {{metric: errors, provider: stats, kind: rate, query: {{url: /stats, value: rate, samples: n}},
          target: 1%, alert: 5%}}
watch: {{gate: g, interval: 0.2s}}
{notify}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{FEATURE_ON: "false", FEATURE_SHARE: "0"}}
      - kind: ramp
        percentages: [10, 25, 50]
        hold: 0.4s
        interval: 0.2s
        gate: g
        max_hold: 0.6s
        on_hold_timeout: fail
"""

HTTP_FLAG = """\
  url: /admin/flag
  token: ${FLAG_TOKEN}
  timeout: 1s
  body: {"on": $enabled, "share": $percent}
  read: {url: /admin/flag, enabled: feature.enabled, percent: feature.percent}"""


@pytest.fixture
def svc(flag_service):
    return flag_service.reset(enabled=True, percent=50)


def make_project(
    tmp: Path, svc: FlagService, *, backend: str = "http", flag: str = HTTP_FLAG, notify: str = ""
) -> Project:
    (tmp / "environments").mkdir(exist_ok=True)
    (tmp / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {svc.url}\n")
    book = tmp / "trust.yaml"
    book.write_text(PLAYBOOK.format(backend=backend, flag=flag, notify=notify))
    return Project(book, tmp / "environments", tmp / "state" / "state.db")


def cli(project: Project, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return rollout_cli(project, *args, env=env)


def audit(project: Project, action: str | None = None) -> list[dict[str, Any]]:
    state = project.state(read_only=True)
    try:
        return [a for a in state.audit_log("production") if action is None or a["action"] == action]
    finally:
        state.close()


def everything_written(project: Project) -> str:
    """The state database's bytes, the incident reports and ``history``/``status`` as JSON."""
    texts = [project.state_path.read_bytes().decode("latin-1")]
    texts += [p.read_text() for p in (project.state_path.parent / "incidents").glob("*")]
    texts += [
        cli(project, "history", "--env", "production", "--json").stdout,
        cli(project, "status", "--json").stdout,
        json.dumps(snapshot(project)),
    ]
    return "\n".join(texts)


# --- 1. tokens quoted back by a flag endpoint, or pasted into a reason -----------------------------


@pytest.mark.slow
def test_a_token_a_flag_endpoint_echoes_is_redacted_in_every_output(svc, tmp_path):
    project = make_project(tmp_path, svc)
    done = cli(
        project,
        "rollback",
        "--env",
        "production",
        "--reason",
        f"paging; token was {WRONG}",
        "--json",
        env={"FLAG_TOKEN": WRONG},
    )
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "flag_off_failed" and "HTTP 401" in answer["message"] and "***" in answer["message"]
    assert [a["action"] for a in audit(project) if a["action"].startswith("flag_off")] == ["flag_off_failed"]
    written = everything_written(project) + done.stdout + done.stderr
    assert WRONG not in written and "HTTP 401" in written
    # without --json the error goes to stderr, also redacted
    again = cli(project, "rollback", "--env", "production", "--reason", "again", env={"FLAG_TOKEN": WRONG})
    assert again.returncode == 1 and WRONG not in again.stdout + again.stderr and "***" in again.stderr


# --- 2. a command backend that carries a token ------------------------------------------------------


def command_flag(svc: FlagService, sleep: float = 0.0) -> str:
    script = (
        "import os, sys, time, httpx; args = dict(zip(sys.argv[1::2], sys.argv[2::2])); "
        f"time.sleep({sleep}); assert args['--token'] == os.environ['DEPLOY_TOKEN'], 'token not resolved'; "
        "r = httpx.put(args['--url'] + '/admin/flag', json={'on': args['--on'] == 'true', "
        f"'share': int(args['--share'])}}, headers={{'Authorization': 'Bearer {TOKEN}'}}); "
        "sys.exit(0 if r.status_code == 200 else 3)"
    )
    argv = [
        sys.executable,
        "-c",
        script,
        "--url",
        svc.url,
        "--token",
        "${DEPLOY_TOKEN}",
        "--on",
        "{enabled}",
        "--share",
        "{percent}",
    ]
    return (
        f"  command: {json.dumps(argv)}\n  timeout: 2s\n"
        "  read: {url: /admin/flag, enabled: feature.enabled, percent: feature.percent}"
    )


@pytest.mark.slow
def test_a_command_backend_token_is_resolved_to_run_and_shown_nowhere(svc, tmp_path):
    project = make_project(tmp_path, svc, backend="command", flag=command_flag(svc))
    configured = cli(
        project,
        "configure",
        "--env",
        "production",
        "--set",
        "FEATURE_ON=true",
        "--set",
        "FEATURE_SHARE=30",
        env={"DEPLOY_TOKEN": DEPLOY},
    )
    assert configured.returncode == 0, configured.stderr
    assert (svc.state["enabled"], svc.state["percent"]) == (True, 30)  # the command ran with the real token
    assert "${DEPLOY_TOKEN}" in configured.stdout and DEPLOY not in configured.stdout + configured.stderr
    configure = audit(project, "configure")[-1]["detail"]
    assert "${DEPLOY_TOKEN}" in configure["env_file"] and DEPLOY not in json.dumps(configure)
    # a command that outlasts its timeout: the error names the program, never the arguments
    project.playbook_path.write_text(PLAYBOOK.format(backend="command", flag=command_flag(svc, sleep=5), notify=""))
    failed = cli(project, "rollback", "--env", "production", "--reason", "stop", env={"DEPLOY_TOKEN": DEPLOY})
    assert failed.returncode == 1 and "did not finish within 2s" in failed.stderr
    written = everything_written(project) + failed.stdout + failed.stderr
    assert DEPLOY not in written and "flag_off_failed" in written


# --- 3. what the service reports, not what rollout last wrote -------------------------------------


@pytest.mark.slow
def test_status_dashboard_and_the_next_flag_off_show_a_service_that_stayed_on(svc, tmp_path, monkeypatch):
    project = make_project(tmp_path, svc)
    configured = cli(
        project, "configure", "--env", "production", "--set", "FEATURE_ON=true", "--set", "FEATURE_SHARE=50"
    )
    assert configured.returncode == 0, configured.stderr
    svc.state["mode"] = "stuck"  # from now on every write answers 200 and nothing changes
    first = cli(project, "rollback", "--env", "production", "--reason", "first", "--json")
    assert first.returncode == 1 and json.loads(first.stdout)["status"] == "unconfirmed"
    [unconfirmed] = audit(project, "flag_off_unconfirmed")
    assert (unconfirmed["detail"]["reported_flag"], unconfirmed["detail"]["reported_percent"]) == (True, 50)
    [row] = json.loads(cli(project, "status", "--json").stdout)
    assert row["live"] == {
        "flag": True,
        "percent": 50,
        "reported_by": "target",
        "env_file": f"reported by the service at {svc.url}",
    }
    [shown] = snapshot(project)["environments"]
    assert (shown["flag"], shown["percent"]) == ("on", 50)
    table = cli(project, "status").stdout
    assert "50%" in table and " on" in table
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    second = runner.rollback(project, "production", "second", SystemClock(), confirm_within=0.3)
    assert second.status == "unconfirmed"
    offs = audit(project, "flag_off")
    assert [(o["detail"]["previous_flag"], o["detail"]["previous_percent"]) for o in offs] == [(True, 50), (True, 50)]
    assert offs[1]["detail"]["backend_held"] == "off at 50%"  # what the backend's record said, beside it


# --- 4. a value the engine cannot judge: a hold, then a flag-off; never a crash -----------------


def test_a_reading_of_1e308_is_a_hold_not_an_overflow():
    gates = GateSet.model_validate(
        {
            "window": 10,
            "min_samples": 1,
            "metrics": [
                {
                    "metric": "errors",
                    "provider": "p",
                    "kind": "rate",
                    "query": "q",
                    "samples": "n",
                    "target": 0.01,
                    "alert": 0.05,
                }
            ],
        }
    )
    verdict = judge_readings(gates, [Reading(1e308, 10**308, 10.0)])
    assert verdict.verdict == HOLD and "could not be judged (OverflowError" in verdict.metrics[0].reason


@pytest.mark.slow
def test_an_advance_reading_1e308_holds_then_turns_the_flag_off_with_a_verdict(svc, tmp_path):
    project = make_project(tmp_path, svc, notify=f"notify:\n  - {{url: '{svc.url}/hook/ok'}}")
    svc.state.update(enabled=False, percent=0, rate=1e308, n=1e308)
    done = cli(project, "advance", "--env", "production", "--json")
    assert done.returncode == 1, done.stdout + done.stderr  # not 70: no crash
    answer = json.loads(done.stdout)
    assert answer["status"] == "rolled_back" and "held too long" in answer["message"]
    assert svc.state["enabled"] is False
    state = project.state(read_only=True)
    try:
        verdicts = state.verdicts("production")
    finally:
        state.close()
    assert verdicts and all(v["verdict"] == "hold" for v in verdicts)
    # a rate of 1e308 is no measurement: a provider error (a hold), never judged
    assert "its value is a rate of 1e+308, which no measurement is" in verdicts[-1]["metrics"][0]["reason"]
    assert [h["body"]["event"] for h in svc.hooks] == ["flag_off"]


def test_a_ramp_whose_flag_write_fails_turns_the_flag_off(svc, tmp_path, monkeypatch):
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    project = make_project(tmp_path, svc)
    svc.state.update(enabled=False, percent=0, mode="refuse", refuse_percent=25)
    with runner.open_context(project, "production", SystemClock(), QuietReporter()) as ctx:
        outcome = runner.advance(ctx)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 1), outcome.message
    assert "could not continue (flag write PUT /admin/flag answered HTTP 500" in outcome.message
    assert svc.state["enabled"] is False and [a["detail"]["percent"] for a in audit(project, "ramp")] == [10]
    assert audit(project, "flag_off_confirmed")


# --- 5. a flag-off whose write fails: exit 1, recorded, reported, notified ----------------------


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["unreachable flag database", "hanging endpoint"])
def test_a_failed_flag_off_is_recorded_reported_and_notified(svc, tmp_path, broken):
    hook = f"notify:\n  - {{url: '{svc.url}/hook/ok'}}"
    if broken == "unreachable flag database":
        project = make_project(tmp_path, svc, backend="postgres", flag="  database: ${FLAG_DB_URL}", notify=hook)
        extra = {"FLAG_DB_URL": f"postgresql://rollout:pw-secret-db@127.0.0.1:{free_port()}/flags"}
    else:
        project = make_project(tmp_path, svc, notify=hook)
        assert (
            cli(
                project, "configure", "--env", "production", "--set", "FEATURE_ON=true", "--set", "FEATURE_SHARE=50"
            ).returncode
            == 0
        )
        svc.state["mode"] = "hang"
        extra = {}
    done = cli(project, "rollback", "--env", "production", "--reason", "pager", "--json", env=extra)
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "flag_off_failed" and "may still be ON" in answer["message"]
    [failed] = audit(project, "flag_off_failed")
    assert failed["detail"]["reason"] == "pager" and failed["detail"]["problem"]
    report = Path(answer["incident_report"]).read_text()
    assert "flag_off_failed" in report and "pw-secret-db" not in report + done.stdout + done.stderr
    [told] = [h["body"] for h in svc.hooks if h["mode"] == "ok"]
    assert told["event"] == "flag_off" and told["write_failed"] is True and told["confirmed"] is False
    assert "FLAG-OFF FAILED" in told["text"]
    status = json.loads(cli(project, "status", "--json", env=extra).stdout)[0]
    assert status["status"] == "rolled_back"  # a ramp running elsewhere stops at its next evaluation
    if broken == "hanging endpoint":  # the guard ran before the write failed: the record keeps the flag it knew
        assert (status["flag"], status["percent"]) == (True, 50)


# --- 6. webhooks never hold the answer ---------------------------------------------------------------


def test_a_webhook_without_its_token_never_turns_a_confirmed_flag_off_into_an_error(svc, tmp_path):
    project = make_project(tmp_path, svc, notify=f"notify:\n  - {{url: '{svc.url}/hook/ok', token: '${{HOOK_TOKEN}}'}}")
    done = cli(project, "rollback", "--env", "production", "--reason", "pager", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["confirmed"] is True and svc.state["enabled"] is False
    [failed] = audit(project, "notify_failed")
    assert "${HOOK_TOKEN} is not set" in failed["detail"]["problem"]


@pytest.mark.slow
def test_a_hanging_webhook_delays_neither_the_cli_nor_the_dashboard_answer(svc, tmp_path, monkeypatch):
    project = make_project(
        tmp_path, svc, notify=f"notify:\n  - {{url: '{svc.url}/hook/hang', timeout: 3s, retries: 0}}"
    )
    command = [
        sys.executable,
        "-m",
        "rollout",
        "rollback",
        "--env",
        "production",
        "--reason",
        "pager",
        "--json",
        "--playbook",
        str(project.playbook_path),
        "--environments",
        str(project.environments_dir),
        "--state",
        str(project.state_path),
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "FLAG_TOKEN": TOKEN}
    )
    lines = []
    while not lines or lines[-1] != "}\n":
        lines.append(proc.stdout.readline())
    answered = time.time()
    proc.wait(30)
    exited = time.time()
    assert json.loads("".join(lines))["confirmed"] is True and proc.returncode == 0
    [confirmed] = audit(project, "flag_off_confirmed")
    assert answered - confirmed["ts"] < 1.0  # the answer, at once
    assert exited - answered > 2.0  # the delivery went on after it ...
    [failed] = audit(project, "notify_failed")  # ... and is recorded
    assert failed["detail"]["problem"] == "ReadTimeout"

    svc.state.update(enabled=True, percent=50)
    monkeypatch.setenv("FLAG_TOKEN", TOKEN)
    with ServerThread(create_dashboard(project, "dash-token-1234")) as dash:
        started = time.monotonic()
        response = httpx.post(
            f"{dash.url}/api/rollback",
            json={"environment": "production", "reason": "again"},
            headers={"Authorization": "Bearer dash-token-1234", "X-Actor": "ana"},
            timeout=10,
        )
        took = time.monotonic() - started
    assert response.status_code == 200 and response.json()["ok"] is True and took < 1.5
    reports = audit(project, "incident_report")
    assert reports[-1]["actor"] == "ana via dashboard"


def test_drain_records_a_delivery_still_going_at_exit(svc, tmp_path):
    project = make_project(tmp_path, svc)
    hook = type(
        "Hook",
        (),
        {
            "name": "slow",
            "url": f"{svc.url}/hook/hang",
            "token": None,
            "events": ["flag_off"],
            "timeout": 3.0,
            "retries": 0,
        },
    )()
    notifier = Notifier([hook], lambda raw: raw, Redactor(), project.state)
    notifier.fire("flag_off", "production", summary="x")
    notifier.drain(limit=0.3)
    [failed] = audit(project, "notify_failed")
    assert "still undelivered when rollout exited after 0.3s" in failed["detail"]["problem"]


# --- 7. phones in a reason; phone lists ---------------------------------------------------------------


@pytest.mark.slow
def test_a_phone_in_a_reason_is_masked_in_history_status_and_the_dashboard(svc, tmp_path):
    project = make_project(tmp_path, svc)
    reason = f"customer {PHONE} and 919876543211,919876543212 complained"
    assert cli(project, "rollback", "--env", "production", "--reason", reason).returncode == 0
    written = everything_written(project)
    for number in ("9876543210", "919876543211", "919876543212"):
        assert number not in written
    assert "+91******3210" in written and "+91******3211,+91******3212" in written


# --- 8. the smaller ones -------------------------------------------------------------------------------


def test_slack_text_escapes_what_a_person_wrote():
    text = slack_text("flag_off", {"environment": "production", "summary": "<!channel> see <https://x|here> & go"})
    assert "<!channel>" not in text and "&lt;!channel&gt; see &lt;https://x|here&gt; &amp; go" in text


def test_configure_names_a_bad_percentage_and_validate_warns_of_no_read_back(svc, tmp_path):
    project = make_project(tmp_path, svc)
    bad = cli(project, "configure", "--env", "production", "--set", "FEATURE_SHARE=5;x")
    assert bad.returncode == 2 and "FEATURE_SHARE: must be a whole number from 0 to 100, got '5;x'" in bad.stderr
    assert "Traceback" not in bad.stderr
    project.playbook_path.write_text(
        project.playbook_path.read_text().replace(
            "  read: {url: /admin/flag, enabled: feature.enabled, percent: feature.percent}\n", ""
        )
    )
    checked = subprocess.run(
        [sys.executable, "-m", "rollout", "validate", str(project.playbook_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0 and "neither flag.read nor target.flag_state" in checked.stderr
    assert "requests/s" in checked.stdout and "bookings/s" not in checked.stdout
