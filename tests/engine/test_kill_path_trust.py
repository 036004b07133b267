"""The kill path never lies: a resume ramps again, a rollback is confirmed by the target (or says
loudly that it is not), an interrupted advance says where the flag stands, and a completed phase
is never shown as completed while its flag is off."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import pytest

from rollout.engine import flagview, runner
from rollout.engine.state import StateStore
from rollout.flags import FlagStore
from tests.cli.test_cli_engine import project, rollout, start, state_of  # noqa: F401 - fixtures
from tests.engine.test_engine import world  # noqa: F401 - fixture
from tests.support.harness import wait_until


@pytest.mark.slow
def test_resume_after_a_completed_ramp_ramps_again_from_the_first_percentage(world):  # noqa: F811
    w = world(percentages="10, 100")
    w.clock.on_sleep.append(w.traffic(40))
    assert w.advance().status == "completed" and w.flags.state() == (True, 100)
    back = runner.rollback(w.project, "production", "complaints", w.clock, who="oncall")
    assert (back.status, back.exit_code, back.details["confirmed"]) == ("rolled_back", 0, True)
    resumed = runner.resume(w.project, "production", "fixed the template", w.clock)
    assert "restarting at 10%" in resumed.message and w.flags.state()[0] is False
    again = w.advance()
    assert (again.status, again.exit_code) == ("completed", 0), again.message
    # the ramp ran again through the same guarded writes, and the feature is on at the end
    assert [r["detail"]["percent"] for r in w.audit("ramp")] == [10, 100, 10, 100]
    assert w.flags.state() == (True, 100) and w.service.metrics(1)["flag_enabled"] is True


@pytest.mark.slow
def test_a_completed_phase_whose_flag_is_off_is_not_called_completed(world):  # noqa: F811
    w = world(percentages="100")
    w.clock.on_sleep.append(w.traffic(40))
    assert w.advance().status == "completed"
    w.flags.set(enabled=False)  # turned off by hand, outside rollout
    outcome = w.advance()
    assert (outcome.status, outcome.exit_code) == ("flag_off", 3) and "rollout resume" in outcome.message
    state = w.project.state()
    try:
        row = state.get("production")
        assert row.status == "completed"
        assert flagview.shown_status(state, row, flag_on=False, turns_flag_on=True) == "completed, flag off"
        assert flagview.shown_status(state, row, flag_on=True, turns_flag_on=True) == "completed"
    finally:
        state.close()
    assert "restarting at 100%" in runner.resume(w.project, "production", "turn it on again", w.clock).message
    assert w.advance().status == "completed" and w.flags.state() == (True, 100)


@pytest.mark.slow
def test_a_rollback_the_service_does_not_take_says_so_and_exits_1(project):  # noqa: F811
    cwd, service = project
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True, WHATSAPP_ROLLOUT_PERCENT=100)
    # the environment names a file the service does not read: the write stops nothing
    env_yaml = cwd / "environments" / "production.yaml"
    env_yaml.write_text(env_yaml.read_text().replace(str(service.env_file), str(cwd / "elsewhere.env")))
    proc = rollout(cwd, "rollback", "--env", "production", "--reason", "pager")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "has NOT confirmed the feature off" in proc.stderr and "may still be ON" in proc.stderr
    assert service.metrics(1)["flag_enabled"] is True  # it was right: the feature is still on
    actions = [a["action"] for a in state_of(cwd)[1]]
    assert "flag_off_unconfirmed" in actions and "flag_off_confirmed" not in actions
    report = next(cwd.glob(".rollout/incidents/production-*.md")).read_text()
    assert "has NOT confirmed the flag off" in report
    as_json = json.loads(rollout(cwd, "rollback", "--env", "production", "--reason", "again", "--json").stdout)
    assert as_json["status"] == "unconfirmed" and as_json["confirmed"] is False


def test_a_confirmed_rollback_exits_0_and_says_so(project):  # noqa: F811
    cwd, service = project
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True, WHATSAPP_ROLLOUT_PERCENT=100)
    proc = rollout(cwd, "rollback", "--env", "production", "--reason", "pager")
    assert proc.returncode == 0, proc.stderr
    assert "confirmed by the service" in proc.stdout and service.metrics(1)["flag_enabled"] is False
    assert "flag_off_confirmed" in [a["action"] for a in state_of(cwd)[1]]


def test_ctrl_c_during_an_advance_says_where_the_flag_stands(project):  # noqa: F811
    cwd, service = project
    first = start(cwd, "advance", "--env", "production")
    try:
        wait_until(lambda: FlagStore(service.env_file).state() == (True, 10), timeout=30, what="ramp at 10%")
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=30)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 130, out + err
    assert "the flag is still ON for 10% of customers in production" in err
    assert "rollout rollback --env production" in err and "rollout advance --env production" in err
    assert "Traceback" not in out + err
    status = json.loads(rollout(cwd, "status", "--env", "production", "--json").stdout)[0]
    assert status["status"] == "interrupted" and status["live"]["flag"] is True
    assert state_of(cwd)[2] is None  # the lock was released


@pytest.mark.slow
def test_a_killed_advance_shows_as_interrupted_not_running(project):  # noqa: F811
    cwd, service = project
    first = start(cwd, "advance", "--env", "production")
    wait_until(lambda: FlagStore(service.env_file).state() == (True, 10), timeout=30, what="ramp at 10%")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    status = json.loads(rollout(cwd, "status", "--env", "production", "--json").stdout)[0]
    assert (status["status"], status["recorded_status"]) == ("interrupted", "running")
    table = rollout(cwd, "status").stdout
    assert re.search(r"production\s+.*interrupted", table) and "running" not in table


@pytest.mark.slow
def test_a_phase_that_asks_for_confirmation_without_a_terminal(project):  # noqa: F811
    cwd, _ = project
    book = cwd / "playbooks" / "whatsapp.yaml"
    book.write_text(
        book.read_text().replace("    environment: production\n", "    environment: production\n    confirm: true\n")
    )
    proc = rollout(cwd, "advance", "--env", "production")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "rollout: phase production asks for confirmation and there is no terminal to ask on; "
        "run `rollout advance --env production --yes` to confirm"
    ]
    # --approve is an explicit decision: the hint after an approval works as printed
    proc = rollout(cwd, "advance", "--env", "production", "--approve", HOLD="0.3s", MAX_HOLD="0.3s")
    assert proc.returncode == 3 and "confirmation" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_read_only_commands_never_create_state_and_refuse_unknown_environments(project):  # noqa: F811
    cwd, _ = project
    state = cwd / ".rollout" / "state.db"
    for args in (
        ("status",),
        ("status", "--env", "production"),
        ("history", "--env", "production"),
        ("advance", "--env", "production", "--dry-run"),
        ("plan", "--env", "production"),
    ):
        proc = rollout(cwd, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert not state.exists() and not state.parent.exists(), args
    typo = rollout(cwd, "status", "--state", ".rollout/stat.db")
    assert typo.returncode == 0 and "does not exist" in typo.stderr and not (cwd / ".rollout").exists()
    for command in ("status", "history"):
        proc = rollout(cwd, command, "--env", "prod")
        assert proc.returncode == 2, proc.stdout
        assert proc.stderr.strip() == "rollout: no environment 'prod' (known: production; files in environments)"
    StateStore(state).close()  # an environment with a record but no file is known too
    store = StateStore(state)
    store.update("old-env", 1.0, status="completed")
    store.close()
    assert rollout(cwd, "history", "--env", "old-env").returncode == 0


@pytest.mark.slow
def test_configure_refuses_bad_names_and_values_and_writes_nothing(project):  # noqa: F811
    cwd, service = project
    before = service.env_file.read_text()
    for pair, says in (
        ("FOO\nWHATSAPP_NOTIFICATIONS_ENABLED=true", "not a variable name"),
        ("lower_case=1", "not a variable name"),
        ("WHATSAPP_ROLLOUT_PERCENT=lots", "WHATSAPP_ROLLOUT_PERCENT: Input should be a valid integer"),
        ("WHATSAPP_ROLLOUT_PERCENT=150", "WHATSAPP_ROLLOUT_PERCENT: Input should be less than"),
        ("WHATSAPP_DEBUG=maybe", "WHATSAPP_DEBUG: must be true or false"),
        ("NOTE=a\rb", "line break"),
    ):
        proc = rollout(cwd, "configure", "--env", "production", "--set", pair)
        assert proc.returncode == 2, (pair, proc.stdout, proc.stderr)
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (pair, proc.stderr)
        assert service.env_file.read_text() == before, pair
    assert not (cwd / ".rollout" / "state.db").exists()


@pytest.mark.slow
def test_bad_variables_in_playbooks_and_environment_files_name_the_line(project):  # noqa: F811
    cwd, _ = project
    book = cwd / "playbooks" / "whatsapp.yaml"
    text = book.read_text()
    book.write_text(text.replace('WHATSAPP_ROLLOUT_PERCENT: "0"}', 'WHATSAPP_ROLLOUT_PERCENT: "lots"}'))
    proc = rollout(cwd, "validate", str(book))
    assert proc.returncode == 2
    assert re.search(
        r"whatsapp\.yaml:\d+: phases\.0\.steps\.0\.set\.WHATSAPP_ROLLOUT_PERCENT: Input should be a "
        "valid integer",
        proc.stderr,
    ), proc.stderr
    book.write_text(text.replace("set: {", 'set: {"bad name": "1", '))
    proc = rollout(cwd, "validate", str(book))
    assert proc.returncode == 2 and "'bad name' is not a variable name" in proc.stderr, proc.stderr
    book.write_text(text)
    env_yaml = cwd / "environments" / "production.yaml"
    env_yaml.write_text(env_yaml.read_text() + "  WHATSAPP_RETRY_ATTEMPTS: 99\n  lower: x\n")
    proc = rollout(cwd, "plan", "--env", "production")
    assert proc.returncode == 2, proc.stdout
    assert (
        re.search(
            r"production\.yaml:\d+: variables\.WHATSAPP_RETRY_ATTEMPTS: Input should be less than or "
            r"equal to 10",
            proc.stderr,
        )
        and "'lower' is not a variable name" in proc.stderr
    ), proc.stderr


@pytest.mark.slow
def test_a_bad_incident_output_path_is_one_line_and_writes_nothing(project, tmp_path):  # noqa: F811
    cwd, _ = project
    for out, says in (
        ("", "--out: the path is empty"),
        ("/dev/full", "/dev/full exists and is not a regular file"),
        ("/nonexistent/dir/x.md", "folder /nonexistent/dir does not exist"),
        (str(tmp_path / ("x" * 300 + ".md")), "--out: cannot write"),
        (str(tmp_path), "is not a regular file"),
    ):
        proc = rollout(cwd, "incident", "--env", "production", "--out", out)
        assert proc.returncode == 2, (out, proc.stdout, proc.stderr)
        assert says in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (out, proc.stderr)
    assert not Path("/nonexistent").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".rollout-")) == []  # no temp left
    good = rollout(cwd, "incident", "--env", "production", "--out", str(tmp_path / "report.md"))
    assert good.returncode == 0 and (tmp_path / "report.md").read_text().startswith("# Incident")
