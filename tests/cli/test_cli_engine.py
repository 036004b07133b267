"""The CLI as people and CI run it: real processes, the real clock, short timings."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollout.engine.state import StateStore
from rollout.flags import FlagStore
from rollout.util.clock import SystemClock
from tests.support import inprocess
from tests.support.harness import ADMIN_TOKEN, SANDBOX_TOKEN, Service, base_env, wait_until

REPO = Path(__file__).resolve().parents[2]

PLAYBOOK = """\
version: 1
name: cli-test
gates:
  g:
    window: 30s
    min_samples: 5
    metrics:
      - {metric: success_rate, target: 95%, alert: 90%}
watch: {gate: g, interval: 0.2s}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
        set: {WHATSAPP_NOTIFICATIONS_ENABLED: "false", WHATSAPP_ROLLOUT_PERCENT: "0"}
      - kind: ramp
        percentages: [10, 50]
        hold: ${HOLD:-60s}
        interval: 0.2s
        gate: g
        max_hold: ${MAX_HOLD:-0s}
        on_hold_timeout: approve
"""


@pytest.fixture
def project(tmp_path, sandbox):
    service = (
        Service(tmp_path / "svc", base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False), clock=SystemClock())
        if (tmp_path / "svc").mkdir() is None
        else None
    )
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "whatsapp.yaml").write_text(PLAYBOOK)
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(
        f"name: production\nservice_url: {service.url}\nenv_file: {service.env_file}\n"
        "variables:\n"
        f"  ZAPTRA_API_URL: {sandbox.api_url}\n"
        "  ZAPTRA_API_TOKEN: ${ZAPTRA_API_TOKEN}\n"
        "  ROLLOUT_ADMIN_TOKEN: ${ROLLOUT_ADMIN_TOKEN}\n"
    )
    yield tmp_path, service
    service.close()


def env(**extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ZAPTRA_API_TOKEN": SANDBOX_TOKEN,
        "ROLLOUT_ADMIN_TOKEN": ADMIN_TOKEN,
        "ROLLOUT_ACTOR": "tester",
        **extra,
    }


def rollout(
    cwd: Path, *args: str, timeout: float = 120, process: bool = False, **extra: str
) -> subprocess.CompletedProcess:
    """``rollout ARGS`` in ``cwd`` as a user runs it, in this process where it can be
    (:mod:`tests.support.inprocess`; ``process``: as ``python -m rollout`` in any case)."""
    return inprocess.run(args, cwd=cwd, timeout=timeout, env=env(**extra), process=process)


def start(cwd: Path, *args: str, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "rollout", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**extra),
    )


def state_of(cwd: Path):
    store = StateStore(cwd / ".rollout" / "state.db")
    try:
        return store.get("production"), store.audit_log("production"), store.holder("production")
    finally:
        store.close()


@pytest.mark.slow
def test_dry_run_shows_the_diff_and_writes_nothing(project):
    cwd, service = project
    before = service.env_file.read_text()
    proc = rollout(cwd, "advance", "--env", "production", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "dry run: nothing was written" in proc.stdout
    assert "ZAPTRA_API_TOKEN" not in proc.stdout or "***" in proc.stdout
    assert SANDBOX_TOKEN not in proc.stdout + proc.stderr
    assert service.env_file.read_text() == before
    assert not (cwd / ".rollout" / "state.db").exists() or state_of(cwd)[1] == []


@pytest.mark.slow
def test_an_advance_meeting_the_lock_this_process_holds_is_run_as_a_process_and_refused(project):
    """The writer lock is keyed on the process id, so a command that meets a lock the test itself
    holds runs as a process (``process=True``): in this process it would take the lock as its own."""
    cwd, service = project
    store, before = StateStore(cwd / ".rollout" / "state.db"), FlagStore(service.env_file).state()
    try:
        store.acquire("production", time.time())
        refused = rollout(cwd, "advance", "--env", "production", process=True)
        assert refused.returncode == 2 and f"(pid {os.getpid()} on" in refused.stderr, refused.stderr
        assert store.holder("production")["pid"] == os.getpid()  # still the test's
        assert FlagStore(service.env_file).state() == before  # nothing written
    finally:
        store.release("production")
        store.close()


def test_a_second_advance_is_refused_and_a_rollback_wins(project):
    cwd, service = project
    first = start(cwd, "advance", "--env", "production")
    try:
        wait_until(lambda: FlagStore(service.env_file).state() == (True, 10), timeout=30, what="ramp at 10%")
        second = rollout(cwd, "advance", "--env", "production")
        assert second.returncode == 2
        assert "is being advanced by tester" in second.stderr and "Traceback" not in second.stderr
        started = time.monotonic()
        back = rollout(cwd, "rollback", "--env", "production", "--reason", "pager went off")
        assert back.returncode == 0, back.stderr
        assert FlagStore(service.env_file).state()[0] is False
        out, err = first.communicate(timeout=30)
        assert first.returncode == 1, err
        assert "rolled back meanwhile" in out + err
        assert time.monotonic() - started < 10
    finally:
        first.kill()
        first.wait()
    assert FlagStore(service.env_file).state()[0] is False  # the advance did not turn it back on
    status = json.loads(rollout(cwd, "status", "--env", "production", "--json").stdout)[0]
    assert status["status"] == "rolled_back" and status["live"]["flag"] is False
    assert status["reason"] == "pager went off"
    history = rollout(cwd, "history", "--env", "production")
    assert "flag_off" in history.stdout and "pager went off" in history.stdout
    # a resume lets it advance again, from the start of its ramp
    resumed = rollout(cwd, "resume", "--env", "production", "--reason", "fixed")
    assert resumed.returncode == 0 and state_of(cwd)[0].ramp_index == 0


@pytest.mark.slow
def test_a_killed_advance_resumes_without_applying_again(project):
    cwd, service = project
    # killed (os._exit, as kill -9) right after the 10 % write and its record committed
    first = rollout(cwd, "advance", "--env", "production", ROLLOUT_CRASH_AT="ramp.after_record:10")
    assert first.returncode == 137, first.stdout + first.stderr
    assert FlagStore(service.env_file).state() == (True, 10)
    state, audit, holder = state_of(cwd)
    assert (state.status, state.ramp_index, state.ramp_applied, state.percent) == ("running", 0, True, 10)
    assert holder is not None  # the dead process's lock is still there ...
    again = rollout(cwd, "advance", "--env", "production", HOLD="0.5s", MAX_HOLD="0.5s")
    assert again.returncode == 3, again.stderr  # ... is taken over; no traffic, so the ramp holds
    assert "stale lock" in again.stdout and "resuming at 10% (applied before; not applied again)" in again.stdout
    state, audit, holder = state_of(cwd)
    assert [a["detail"]["percent"] for a in audit if a["action"] == "ramp"] == [10]
    assert holder is None and state.status == "awaiting_approval"


@pytest.mark.slow
def test_exit_codes_for_usage_and_configuration_errors(project):
    cwd, _ = project
    proc = rollout(cwd, "advance", "--env", "staging")
    assert proc.returncode == 2 and "no phase runs in environment 'staging' (phases run in: production)" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "rollout", "advance", "--env", "production"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={k: v for k, v in env().items() if k != "ZAPTRA_API_TOKEN"},
    )
    assert proc.returncode == 2 and "ZAPTRA_API_TOKEN" in proc.stderr and "is not set" in proc.stderr
    proc = rollout(cwd, "advance")
    assert proc.returncode == 2 and "--env" in proc.stderr
    for out in (proc.stdout, proc.stderr):
        assert "Traceback" not in out


def test_shipped_plan_shows_every_step(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rollout", "plan", "--env", "production", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env(
            ZAPTRA_SANDBOX_TOKEN="x" * 10,
            ROLLOUT_STATE=str(tmp_path / "s.db"),
            ROLLOUT_PRODUCTION_ENV_FILE=str(tmp_path / "p.env"),
        ),
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert [s["kind"] for s in plan["steps"]] == ["approve", "promote", "configure", "smoke", "health", "ramp"]
    diff = {d["variable"]: d for d in plan["configure_diff"]}
    assert diff["ZAPTRA_API_TOKEN"]["to"] == "***" and diff["WHATSAPP_NOTIFICATIONS_ENABLED"]["to"] == "false"


@pytest.mark.slow
@pytest.mark.xdist_group("demo")  # one whole demo at a time (tests/demo/test_wheel.py runs the other)
def test_demo_with_a_breach_turns_the_flag_off_by_itself(tmp_path):
    # named as the demo names its folders by default: a timestamp is never masked as a phone
    folder = tmp_path / "20261124-203903"
    proc = subprocess.run(
        [sys.executable, "-m", "rollout", "demo", "--breach", "--folder", str(folder)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        env=env(),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "as expected: production ended rolled_back" in proc.stdout
    assert "flag off after" in proc.stdout and "the service confirmed the flag off" in proc.stdout
    assert (folder / "state.db").exists()
    # every path it prints can be copied: the incident report is where it says
    printed = re.findall(r"incident report: (\S+\.md)", proc.stdout)
    assert printed and all(Path(p).exists() for p in printed), printed
    report = Path(printed[-1]).read_text()
    assert str(folder) in report or "20261124-203903" in report
    store = StateStore(folder / "state.db")
    try:
        paths = [a["detail"]["path"] for a in store.audit_log("production") if a["action"] == "incident_report"]
    finally:
        store.close()
    assert paths and all(Path(p).exists() for p in paths)
    leftovers = subprocess.run(["pgrep", "-f", str(folder)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""  # every process it started is gone


GATE_PLAYBOOK = """\
version: 1
name: gate-test
gates:
  g: {window: 60s, min_samples: 1, metrics: [{metric: success_rate, target: 95%, alert: 90%}]}
watch: {gate: g, interval: 1s}
phases:
  - name: staging
    environment: production
    steps:
      - {kind: configure}
      - kind: smoke
        checks:
          - {type: http, name: health answers, path: /api/whatsapp/health, expect: {status: 200}}
          - {type: booking, name: booking is confirmed, expect: sent}
      - {kind: gate, name: numbers hold, gate: g}
"""


@pytest.mark.slow
def test_gate_writes_junit_and_records_evidence(project, sandbox):
    import xml.etree.ElementTree as ET

    cwd, service = project
    (cwd / "playbooks" / "whatsapp.yaml").write_text(GATE_PLAYBOOK)
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True)
    proc = rollout(cwd, "gate", "--env", "production", "--junit", "out/junit.xml", "--commit", "abc123")
    assert proc.returncode == 2 and "--junit: folder out does not exist" in proc.stderr, proc.stderr
    assert state_of(cwd)[1] == []  # refused before any gate ran
    (cwd / "out").mkdir()
    proc = rollout(cwd, "gate", "--env", "production", "--junit", "out/junit.xml", "--commit", "abc123")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    suite = ET.parse(cwd / "out" / "junit.xml").getroot().find("testsuite")
    names = [c.get("name") for c in suite.findall("testcase")]
    assert names == ["health answers", "booking is confirmed", "success_rate"]
    assert suite.get("failures") == "0" and suite.find("properties/property[@name='commit']").get("value") == "abc123"
    assert [a["action"] for a in state_of(cwd)[1]] == ["gate_passed"]  # nothing else was changed
    # now the provider refuses everything: the same gate fails, with value and threshold in the failure
    sandbox.faults(error_rate=1.0, error_message="(#131026) Message Undeliverable.")
    proc = rollout(cwd, "gate", "--env", "production", "--junit", "out/junit.xml", "--json")
    assert proc.returncode == 1
    summary = json.loads(proc.stdout)
    assert summary["status"] == "failed"
    failures = {
        c.get("name"): c.find("failure") for c in ET.parse(cwd / "out" / "junit.xml").getroot().iter("testcase")
    }
    assert failures["booking is confirmed"] is not None
    assert "expected sent" in failures["booking is confirmed"].get("message")
    assert failures["health answers"] is None
    assert SANDBOX_TOKEN not in (cwd / "out" / "junit.xml").read_text()


@pytest.mark.slow
def test_manual_rollback_writes_an_incident_report(project, sandbox):
    cwd, service = project
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True, WHATSAPP_ROLLOUT_PERCENT=100)
    service.wait_status(service.book(1)["id"], "sent")
    sandbox.faults(error_rate=1.0, error_message="(#131026) undeliverable to 919876543210")
    service.wait_status(service.book(2)["id"], "failed")
    proc = rollout(cwd, "rollback", "--env", "production", "--reason", "complaints from parents", "--json")
    assert proc.returncode == 0, proc.stderr
    report_path = Path(json.loads(proc.stdout)["incident_report"])
    report = report_path.read_text()
    assert "SEV-3" in report and "complaints from parents" in report and "by tester" in report
    assert "`undeliverable` 1" in report and "+91******3210" in report
    assert "9876543210" not in report and SANDBOX_TOKEN not in report and ADMIN_TOKEN not in report
    assert "ZAPTRA_API_TOKEN=***" in report and "WHATSAPP_NOTIFICATIONS_ENABLED=false" in report
    # the same report on demand, with a custom template
    (cwd / "t.j2").write_text("{{ env }} {{ status }} {{ reason }}\n")
    proc = rollout(cwd, "incident", "--env", "production", "--template", "t.j2")
    assert proc.stdout == "production rolled_back complaints from parents\n"
    (cwd / "bad.j2").write_text("{{ nonsense.field }}\n")
    proc = rollout(cwd, "incident", "--env", "production", "--template", "bad.j2")
    assert proc.returncode == 2 and "bad.j2" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_ci_script_runs_the_staging_gates_and_writes_junit(tmp_path):
    import xml.etree.ElementTree as ET

    from rollout.util.serving import free_port

    bin_dir = Path(sys.executable).parent
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "ci-staging-gates.sh")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            **os.environ,
            "SANDBOX_PORT": str(free_port()),
            "SERVICE_PORT": str(free_port()),
            "WORK": str(tmp_path / "ci"),
            "REPORTS": str(tmp_path / "reports"),
            "ROLLOUT": f"{sys.executable} -m rollout",
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        },
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    suite = ET.parse(tmp_path / "reports" / "staging-gates.xml").getroot().find("testsuite")
    names = [c.get("name") for c in suite.findall("testcase")]
    assert "booking with a real phone number is confirmed" in names
    assert {"invalid phone", "API timeout", "circuit breaker trips and resets"} <= set(names)
    assert "notification success rate" in names and suite.get("failures") == "0"


@pytest.mark.slow
def test_load_command_reports_percentiles(project):
    cwd, service = project
    proc = rollout(cwd, "load", "--url", service.url, "--bookings", "40", "--concurrency", "8", "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert (summary["requested"], summary["created"], summary["success_rate"]) == (40, 40, 1.0)
    assert 0 < summary["p50_ms"] <= summary["p95_ms"] <= summary["p99_ms"]
    outbox = service.metrics(600)["outbox"]
    assert sum(outbox[k] for k in ("pending", "sending", "sent", "failed", "skipped")) == 40  # all 40 were stored
    bad = rollout(cwd, "load", "--url", service.url, "--rate", "5")
    assert bad.returncode == 2 and "--rate and --duration go together" in bad.stderr
    too_long = rollout(cwd, "load", "--url", service.url, "--rate", "5", "--duration", "1h")
    assert too_long.returncode == 2 and "at most 10m" in too_long.stderr
