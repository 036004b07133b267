"""The kill path against a flag service that answers badly on purpose (:mod:`tests.support.hostile`): wrong
shapes, reads that fail while writes work, nothing listening, a 404 to the off, a redirect, an answer
that trickles one byte every 0.5 s and one that floods (2 MB of gzip, 2 GiB expanded). Whatever it
does, a flag-off ends in ``flag_off`` or ``flag_off_failed`` with the incident report written and the
webhook told; the off is the first request; it ends within ``flag.timeout`` plus a second, in bounded
memory; ``rollout incident`` never needs the flag service."""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path
from typing import Any

import pytest

from rollout.console import QuietReporter
from rollout.engine import runner
from rollout.engine.project import Project
from rollout.util.clock import SystemClock
from tests.engine.test_operator_verbs import actions
from tests.support.flagservice import rollout_argv
from tests.support.hostile import Answer, Hostile, bomb_answer, json_answer, trickled

FEATURE = "/api/admin/projects/default/features/wa"
ENV = f"{FEATURE}/environments/production"
OFF = f"POST {ENV}/off"
READ = f"GET {FEATURE}"
TOKEN = "unleash-admin-token-5e1f"

PLAYBOOK = """\
version: 1
name: hostile
target:
  kind: http
  health: {{url: /healthz, expect: {{status: 200}}}}
  flag_state: {{url: /svc/flag, enabled: enabled, percent: percent}}
flag: {{backend: unleash, url: '{url}', token: '${{UNLEASH_ADMIN_TOKEN}}', feature: wa, environment: production,
        timeout: {timeout}}}
notify:
  - {{url: '{url}/hook', events: [flag_off], retries: 0}}
providers:
  stats: {{kind: http}}
gates:
  g:
    window: 10s
    metrics:
      - {{metric: errors, provider: stats, kind: rate, query: {{url: /stats, value: rate, samples: n}},
          target: 1%, alert: 5%}}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {{WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}}
      - kind: ramp
        percentages: [10, 100]
        hold: 1s
        gate: g
"""

#: what the Admin API answers to the read, in shapes rollout does not expect
WRONG_SHAPES = {
    "a list": [1, 2, 3],
    "environments a string": {"environments": "x"},
    "parameters a list": {
        "environments": [
            {"name": "production", "enabled": True, "strategies": [{"title": "rollout", "parameters": [1, 2]}]}
        ]
    },
}


@pytest.fixture
def hostile(hostile_server: Hostile, monkeypatch: pytest.MonkeyPatch) -> Hostile:
    """The hostile Unleash (and the service and webhook beside it): the service reports the feature
    off, the webhook answers; each test says how the Admin API behaves."""
    monkeypatch.setenv("UNLEASH_ADMIN_TOKEN", TOKEN)
    server = hostile_server.reset()
    server.on("GET /svc/flag", json_answer({"enabled": False, "percent": 0}))
    server.on("GET /healthz", json_answer({"status": "ok"}))
    server.on("POST /hook", json_answer({"ok": True}))
    return server


def make_project(tmp: Path, url: str, timeout: str = "1s") -> Project:
    (tmp / "environments").mkdir(exist_ok=True)
    (tmp / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {url}\n")
    book = tmp / "hostile.yaml"
    book.write_text(PLAYBOOK.format(url=url, timeout=timeout))
    project = Project(book, tmp / "environments", tmp / "state" / "state.db")
    state = project.state()
    try:  # the feature on at 25 %, as rollout recorded it
        state.update("production", 1.0, status="running", phase="production", flag=True, percent=25)
    finally:
        state.close()
    return project


def audit(project: Project, action: str) -> list[dict[str, Any]]:
    state = project.state(read_only=True)
    try:
        return [a for a in state.audit_log("production") if a["action"] == action]
    finally:
        state.close()


def rollback(project: Project) -> runner.RunOutcome:
    outcome = runner.rollback(project, "production", "drill", SystemClock(), who="oncall", out=QuietReporter())
    if outcome.pending is not None:
        outcome.pending()  # the webhook deliveries, as the CLI waits for them
    return outcome


def cli(project: Project, *args: str, limit_memory: bool = False) -> tuple[subprocess.CompletedProcess[str], int]:
    """``rollout ARGS`` in a process of its own; returns it and its peak RSS in MiB. With
    ``limit_memory`` its address space is capped at 3 GiB, so a build that reads without bound fails
    with a MemoryError instead of taking the machine."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    out, err = project.playbook_path.parent / "out.txt", project.playbook_path.parent / "err.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen(
            rollout_argv(project, *args),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "1"},
            preexec_fn=cap if limit_memory else None,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out.read_text(), err.read_text())
    return done, usage.ru_maxrss // 1024


def report_of(project: Project) -> str:
    [report] = (project.state_path.parent / "incidents").glob("production-*.md")
    return report.read_text()


@pytest.mark.parametrize("shape", list(WRONG_SHAPES))
def test_a_wrong_shaped_read_never_stops_the_off_which_goes_first(tmp_path, hostile, shape):
    hostile.on(READ, json_answer(WRONG_SHAPES[shape]))
    hostile.on(OFF, json_answer({}))
    project = make_project(tmp_path, hostile.url)
    outcome = rollback(project)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 0), outcome.message
    admin = [r for r in hostile.requests() if "/api/admin/" in r]
    assert admin[0] == OFF  # the off is the first request the backend sees, nothing read before it
    assert [a for a in actions(project) if a.startswith(("flag_", "incident"))] == [
        "flag_intent",
        "flag_off",
        "flag_off_confirmed",
        "incident_report",
    ]
    [off] = audit(project, "flag_off")
    assert off["detail"]["previous_flag"] is True and off["detail"]["previous_percent"] == 25
    assert "POST /hook" in hostile.requests()  # the notification went out
    assert "turned off in **production**" in report_of(project)


@pytest.mark.slow  # runs the CLI in processes of its own
def test_a_wrong_shape_from_the_cli_exits_as_documented_and_status_still_answers(tmp_path, hostile):
    hostile.on(READ, json_answer([1, 2, 3]))
    hostile.on(OFF, json_answer({}))
    project = make_project(tmp_path, hostile.url)
    done, _ = cli(project, "rollback", "--env", "production", "--reason", "drill")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    status, _ = cli(project, "status", "--env", "production", "--json")
    [row] = json.loads(status.stdout)
    assert row["status"] == "rolled_back" and row["live"]["flag"] is False


def test_reads_failing_while_writes_work_still_turn_the_feature_off(tmp_path, hostile):
    hostile.on(READ, json_answer({"message": "database is on fire"}, 500))
    hostile.on(OFF, json_answer({}))
    project = make_project(tmp_path, hostile.url)
    outcome = rollback(project)
    assert (outcome.status, outcome.exit_code) == ("rolled_back", 0), outcome.message
    assert hostile.requests(method="POST")[0] == OFF


def test_a_404_to_the_off_is_a_failed_flag_off_never_missing_so_off(tmp_path, hostile):
    hostile.on(OFF, json_answer({"message": "feature not found"}, 404))
    project = make_project(tmp_path, hostile.url)
    outcome = rollback(project)
    assert (outcome.status, outcome.exit_code) == ("flag_off_failed", 1)
    assert "nothing was turned off" in outcome.message and "HTTP 404" in outcome.message
    assert "flag_off" not in actions(project) and "flag_off_failed" in actions(project)
    assert "NOT turned off (the flag-off FAILED)" in report_of(project)


def test_a_redirect_is_named_and_not_followed(tmp_path, hostile):
    hostile.on(OFF, Answer(302, b"", ("Location: https://unleash.example.com/api/admin/x",)))
    project = make_project(tmp_path, hostile.url)
    outcome = rollback(project)
    assert outcome.status == "flag_off_failed"
    assert "a redirect to https://unleash.example.com/api/admin/x" in outcome.message
    assert "never follows redirects" in outcome.message
    assert [r for r in hostile.requests() if "/api/admin/" in r] == [OFF]


@pytest.mark.slow  # runs the CLI in processes of its own
def test_unleash_down_fails_loudly_and_the_report_is_written_from_the_record(tmp_path, hostile):
    project = make_project(tmp_path, "http://127.0.0.1:9")  # nothing listens there
    book = project.playbook_path
    book.write_text(book.read_text().replace("url: 'http://127.0.0.1:9/hook'", f"url: '{hostile.url}/hook'"))
    outcome = rollback(project)
    assert (outcome.status, outcome.exit_code) == ("flag_off_failed", 1)
    assert "cannot be reached" in outcome.message
    assert [a for a in actions(project) if a.startswith(("flag_", "incident"))] == [
        "flag_intent",
        "flag_off_failed",
        "incident_report",
    ]
    report = report_of(project)
    assert "the flag-off FAILED" in report and "cannot be reached" in report
    assert "NOT turned off (the flag-off FAILED)" in report and "as rollout recorded it" in report
    assert "POST /hook" in hostile.requests()  # told, loudly
    [hook] = [body for method, path, body in hostile.seen if path == "/hook"]
    assert json.loads(hook)["write_failed"] is True
    # the report on demand needs no flag service either, and exits as documented
    done, _ = cli(project, "incident", "--env", "production")
    assert done.returncode == 0, done.stderr
    assert "the flag backend could not be read" in done.stdout and "cannot be reached" in done.stdout


@pytest.mark.parametrize("where", ["body", "headers"])
def test_a_trickling_unleash_holds_a_rollback_no_longer_than_its_timeout_plus_a_second(tmp_path, hostile, where):
    hostile.on(OFF, trickled({}, every=0.5, headers=where == "headers"))
    project = make_project(tmp_path, hostile.url, timeout="1s")
    outcome = rollback(project)
    assert outcome.status == "flag_off_failed" and "within flag.timeout (1s" in outcome.message
    [intent] = audit(project, "flag_intent")
    [failed] = audit(project, "flag_off_failed")
    [report] = audit(project, "incident_report")
    # measured by the record: the intent just before the off, the report after everything else
    assert failed["ts"] - intent["ts"] < 1.0 + 1.0
    assert report["ts"] - intent["ts"] < 1.0 + 1.0


@pytest.mark.slow
def test_a_flooding_unleash_is_read_no_further_than_the_cap_in_bounded_memory(tmp_path, hostile):
    hostile.on(OFF, bomb_answer(2))  # 2 MB of gzip, 2 GiB of zeros once expanded
    hostile.on(READ, bomb_answer(2))
    project = make_project(tmp_path, hostile.url, timeout="5s")
    done, peak_mib = cli(project, "rollback", "--env", "production", "--reason", "flood", limit_memory=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "larger than 1 MiB" in done.stderr and "Traceback" not in done.stderr
    print(f"rollback against a flooding Unleash peaked at {peak_mib} MiB")
    assert peak_mib < 250, f"rollback peaked at {peak_mib} MiB"
    [intent] = audit(project, "flag_intent")
    [failed] = audit(project, "flag_off_failed")
    assert failed["ts"] - intent["ts"] < 5.0 + 1.0
    assert "incident_report" in actions(project)


class Exploding:
    """A backend with a bug: its write raises something that is no error of rollout's."""

    flag_variable, percent_variable, env_file = "FEATURE_ON", "FEATURE_SHARE", None

    def describe(self) -> str:
        return "an exploding backend"

    def set(self, enabled=None, percent=None, guard=None):
        if guard is not None:
            guard()
        raise KeyError("environments")

    def read(self) -> dict[str, str]:
        raise AttributeError("'list' object has no attribute 'get'")

    def close(self) -> None:
        pass


def test_whatever_a_backend_raises_the_flag_off_is_recorded_reported_and_notified(tmp_path, hostile):
    from rollout.checks.client import ServiceClient
    from rollout.engine.killswitch import OffPath, switch_off
    from rollout.playbook.environments import load_environment, resolve

    project = make_project(tmp_path, hostile.url)
    state = project.state()
    told: list[dict[str, Any]] = []
    service = ServiceClient(hostile.url, timeout=1.0)
    try:
        resolved = resolve(load_environment("production", project.environments_dir))
        path = OffPath(
            "production",
            Exploding(),
            state,
            SystemClock(),
            QuietReporter(),
            None,
            resolved,
            service,  # type: ignore[arg-type]
            project.incidents_dir,
            lambda event, **detail: told.append({"event": event, **detail}),
        )
        done = switch_off(path, "drill", automatic=False, who="oncall")
    finally:
        service.close()
        state.close()
    assert done.off is None and "KeyError: 'environments'" in (done.problem or "")
    assert [a for a in actions(project) if a.startswith(("flag_", "incident"))] == [
        "flag_intent",
        "flag_off_failed",
        "incident_report",
    ]
    [failed] = audit(project, "flag_off_failed")
    assert failed["detail"]["problem"] == "KeyError: 'environments'"
    assert "NOT turned off (the flag-off FAILED)" in report_of(project)
    assert told and told[0]["write_failed"] is True and told[0]["incident_report"]
