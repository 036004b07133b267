"""``rollout drill`` against the real service: the flag on at a chosen share, off, every replica timed,
then back exactly as found; audited as a drill and never as a rollback; refused while an advance
drives the environment or once it is rolled back; a rollback during a drill wins; Ctrl-C and a
crash between the flag-off and the restore never leave the flag other than the drill found it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from rollout.console import QuietReporter
from rollout.dashboard.app import snapshot
from rollout.engine import drill, runner
from rollout.engine.flagwrites import INTENT
from rollout.engine.state import StateStore
from rollout.flags import FlagStore
from rollout.util.errors import ConfigError, StateError
from tests.cli.test_cli_engine import project, rollout, start, state_of  # noqa: F401 - fixtures
from tests.engine.test_engine import world  # noqa: F401 - fixture
from tests.support.harness import Service, base_env, wait_until

DRILL_ACTIONS = [
    "drill_started",
    INTENT,
    "drill_armed",
    INTENT,
    "drill_off",
    "drill_round",
    INTENT,
    "drill_restored",
    "drill_finished",
]


def run_drill(w, percent=None, within=3.0, **kw):
    with runner.open_context(w.project, "production", w.clock, QuietReporter()) as ctx:
        return drill.run(ctx, percent, within, who="tester", **kw)


def test_a_drill_of_the_embedded_service_times_the_flag_off_and_leaves_the_flag_exactly_as_found(world):  # noqa: F811
    w = world(percentages="10, 50, 100")
    before = w.service.env_file.read_text()
    assert w.flags.state() == (False, 0)
    outcome = run_drill(w)
    assert (outcome.status, outcome.exit_code) == ("drill_passed", 0), outcome.message
    # the lowest percentage of the ramp was drilled: armed at 10 %, off, restored
    [found] = w.audit("drill_started")
    assert (found["detail"]["percent"], found["detail"]["found_flag"], found["detail"]["found_percent"]) == (
        10,
        False,
        0,
    )
    assert [a["action"] for a in w.audit() if a["action"].startswith("drill") or a["action"] == INTENT] == DRILL_ACTIONS
    assert [a["detail"]["by"] for a in w.audit(INTENT)] == ["drill_arm", "drill_off", "drill_restore"]
    [done] = w.audit("drill_finished")
    [only] = done["detail"]["rounds"]
    assert done["detail"]["passed"] is True and only["hinted"] is False
    assert list(only["replicas"]) == [w.service.url] and only["replicas"][w.service.url] is not None
    assert f"slowest replica polling alone: {only['slowest_ms']:.0f}" in outcome.message.replace(",", "")
    # exactly as found: the file byte for byte, what the service reports, the environment's record
    assert w.service.env_file.read_text() == before and w.flags.state() == (False, 0)
    metrics = w.service.metrics(1)
    assert (metrics["flag_enabled"], metrics["rollout_percent"]) == (False, 0)
    assert w.env_state().status == "idle" and w.env_state().flag is None
    # never a rollback: no flag_off, no incident report, no flag-off counted for /metrics
    assert not w.audit("flag_off") and not (w.tmp / "incidents").exists()
    state = w.project.state()
    try:
        assert state.tallies("production")["flag_offs"] == {"analysis": 0, "operator": 0}
    finally:
        state.close()
    # the dashboard shows the last drill's figures
    [env] = snapshot(w.project)["environments"]
    assert env["drill"]["passed"] is True and env["drill"]["unfinished"] is False
    assert env["drill"]["rounds"] == [{"mode": "poll", "slowest_ms": only["slowest_ms"], "replicas": only["replicas"]}]


def test_a_flag_found_on_is_drilled_from_where_it_stands_and_put_back_there(world):  # noqa: F811
    w = world()
    w.flags.set(enabled=True, percent=25)
    wait_until(lambda: w.service.metrics(1)["rollout_percent"] == 25, what="the service on at 25%")
    with pytest.raises(ConfigError, match="on for 25% of customers now; a drill turns it off from where it stands"):
        run_drill(w, percent=10)
    assert not w.audit("drill_started")
    outcome = run_drill(w, percent=25)
    assert outcome.exit_code == 0, outcome.message
    assert [a["detail"]["by"] for a in w.audit(INTENT)] == ["drill_off", "drill_restore"]  # nothing to arm
    assert w.flags.state() == (True, 25) and w.service.metrics(1)["flag_enabled"] is True


def test_a_rolled_back_environment_refuses_a_drill(world):  # noqa: F811
    w = world()
    assert runner.rollback(w.project, "production", "pager", w.clock).exit_code == 0
    with pytest.raises(StateError, match=r"is rolled back .*a drill would turn the feature on again"):
        run_drill(w)
    assert not w.audit("drill_started") and w.flags.state()[0] is False


def test_a_rollback_during_the_drill_wins_and_the_drill_restores_nothing(world, monkeypatch):  # noqa: F811
    w = world()
    w.flags.set(enabled=True, percent=50)
    measure = drill.time_until

    def rollback_first(replicas, flag, *args, **kw):
        if flag is False:  # the drill's flag-off is written: a real rollback lands now
            runner.rollback(w.project, "production", "a real breach", w.clock, who="oncall")
        return measure(replicas, flag, *args, **kw)

    monkeypatch.setattr(drill, "time_until", rollback_first)
    outcome = run_drill(w)
    assert (
        outcome.exit_code == 1
        and "rolled back during the drill (a real breach); the rollback stands" in outcome.message
    )
    assert w.flags.state()[0] is False and w.env_state().status == "rolled_back"
    assert not w.audit("drill_restored") and len(w.audit("flag_off")) == 1
    [done] = w.audit("drill_finished")
    assert done["detail"]["stopped"] == "overtaken" and done["detail"]["restored"] is False
    assert drill.unfinished(w.project.state(), "production") is None  # nothing left for the next command to do


def test_hints_only_help_a_polled_flag_service(world):  # noqa: F811
    w = world()
    with runner.open_context(w.project, "production", w.clock, QuietReporter()) as ctx:
        plan = drill.plan(ctx, None)
        assert drill.hints.wants_hints(ctx.flags, ctx.target) is False  # the env file reaches the service live
    assert plan.rounds == (False,) and plan.percent == 10 and plan.exposes


# --- the command line: a live advance, Ctrl-C, a crash, a replica that does not obey -----------------


@pytest.mark.slow
def test_a_drill_is_refused_while_an_advance_holds_the_writer_lock(project):  # noqa: F811
    cwd, service = project
    FlagStore(service.env_file).set(enabled=True, percent=10)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rollout.engine.state import StateStore; "
            f"StateStore({str(cwd / '.rollout' / 'state.db')!r}).acquire('production', time.time()); "
            "print('held', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        done = rollout(cwd, "drill", "--env", "production", "--yes")
        assert done.returncode == 2, done.stdout + done.stderr
        assert "production is being driven by" in done.stderr and f"(pid {holder.pid} on" in done.stderr
        assert "Traceback" not in done.stderr
    finally:
        holder.kill()
        holder.wait()
    _, audit, _ = state_of(cwd)
    assert not [a for a in audit if a["action"].startswith("drill")]
    assert FlagStore(service.env_file).state() == (True, 10)


def drill_project(folder, flag: str, environment: str, percentages: str = "10, 50, 100") -> None:
    """A playbook with ``flag`` (its ``flag:`` line) and a ramp, and environment ``production`` (its lines
    after the name), in ``folder`` as ``rollout`` finds them by default."""
    (folder / "playbooks").mkdir()
    (folder / "playbooks" / "whatsapp.yaml").write_text(
        f"version: 1\nname: drill\n{flag}\n"
        "gates:\n  g: {window: 10s, metrics: [{metric: success_rate, target: 95%, alert: 90%}]}\n"
        "phases:\n  - name: production\n    environment: production\n    steps:\n"
        f"      - {{kind: configure}}\n      - {{kind: ramp, percentages: [{percentages}], hold: 1m, gate: g}}\n"
    )
    (folder / "environments").mkdir()
    (folder / "environments" / "production.yaml").write_text(f"name: production\n{environment}\n")


@pytest.fixture
def stuck_replica(tmp_path, sandbox):
    """A second replica that reads an env file of its own: on for 10 %, whatever the drill writes."""
    (tmp_path / "stuck").mkdir()
    replica = Service(tmp_path / "stuck", base_env(sandbox.api_url, WHATSAPP_ROLLOUT_PERCENT=10))
    yield replica
    replica.close()


def with_replicas(cwd, *urls: str) -> None:
    env_file = cwd / "environments" / "production.yaml"
    env_file.write_text(env_file.read_text() + "replicas:\n" + "".join(f"  - {u}\n" for u in urls))


@pytest.mark.slow
def test_a_replica_that_does_not_obey_within_the_bound_is_named_and_the_flag_is_restored(project, stuck_replica):  # noqa: F811
    cwd, service = project
    with_replicas(cwd, service.url, stuck_replica.url)
    flags = FlagStore(service.env_file)
    flags.set(enabled=True, percent=10)
    done = rollout(cwd, "drill", "--env", "production", "--within", "2s", "--yes", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    [only] = report["drill"]["rounds"]
    assert only["replicas"][service.url] is not None and only["replicas"][stuck_replica.url] is None
    assert report["drill"]["late"] == [stuck_replica.url] and report["drill"]["restored"] is True
    assert "1 replica(s) did not obey the flag-off within 2s" in report["message"]
    assert only["said"] == {stuck_replica.url: "flag on for 10%"}
    assert flags.state() == (True, 10) and service.metrics(1)["flag_enabled"] is True


@pytest.mark.slow
def test_ctrl_c_during_a_drill_restores_the_flag_first(project, stuck_replica):  # noqa: F811
    cwd, service = project
    with_replicas(cwd, service.url, stuck_replica.url)  # the stuck one keeps the flag-off round waiting
    flags = FlagStore(service.env_file)
    flags.set(enabled=True, percent=10)
    proc = start(cwd, "drill", "--env", "production", "--within", "20s", "--yes")
    try:
        wait_until(
            lambda: any(a["action"] == "drill_off" for a in state_of(cwd)[1]), timeout=30, what="the drill's flag-off"
        )
        assert flags.state()[0] is False
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, out + err
    assert "drill interrupted" in out + err and "Traceback" not in out + err
    assert flags.state() == (True, 10) and service.metrics(1)["flag_enabled"] is True
    _, audit, holder = state_of(cwd)
    [done] = [a for a in audit if a["action"] == "drill_finished"]
    assert done["detail"]["stopped"] == "interrupted" and done["detail"]["confirmed"] is True
    assert holder is None  # the writer lock is given back


@pytest.mark.slow
@pytest.mark.parametrize("then", ["drill", "advance"])
def test_a_drill_killed_between_its_flag_off_and_its_restore_is_put_right_by_the_next_command(project, then):  # noqa: F811
    cwd, service = project
    flags = FlagStore(service.env_file)
    flags.set(enabled=True, percent=10)
    crashed = rollout(cwd, "drill", "--env", "production", "--yes", ROLLOUT_CRASH_AT="drill_off.after_record")
    assert crashed.returncode == 137, crashed.stdout + crashed.stderr
    assert flags.state()[0] is False  # left off by the dead drill
    state = StateStore(cwd / ".rollout" / "state.db")
    try:
        assert drill.unfinished(state, "production") is not None
    finally:
        state.close()
    assert drill.last_drill(state_of(cwd)[1])["unfinished"] is True  # what the dashboard shows meanwhile
    if then == "drill":
        fixed = rollout(cwd, "drill", "--env", "production", "--yes")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        said = fixed.stdout + fixed.stderr
    else:
        fixed = rollout(cwd, "advance", "--env", "production", "--approve", HOLD="0.3s", MAX_HOLD="0.3s")
        said = fixed.stdout + fixed.stderr
        assert fixed.returncode in (0, 3), said
    assert "an earlier drill in production (started by tester) did not finish" in said
    assert "the flag is restored to on for 10%, as that drill found it" in said
    _, audit, _ = state_of(cwd)
    actions = [a["action"] for a in audit]
    assert actions.count("drill_recovered") == 1 and "flag_off" not in actions
    assert drill.last_drill(audit)["unfinished"] is False
    if then == "drill":
        assert flags.state() == (True, 10) and service.metrics(1)["rollout_percent"] == 10
    else:  # the advance went on from there, through its own configure step
        assert actions.index("drill_recovered") < actions.index("phase_started")


def test_the_service_takes_a_hint_only_with_a_token_and_says_what_it_did(make_service):
    svc = make_service(ROLLOUT_HINT_TOKEN="hint-token-0123456789")
    url = "/api/whatsapp/flag/refresh"
    assert svc.http.post(url).status_code == 401
    assert svc.http.post(url, headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
    for token in ("hint-token-0123456789", svc.admin["Authorization"][7:]):
        answer = svc.http.post(url, headers={"Authorization": f"Bearer {token}"}, json={"type": "feature-updated"})
        assert answer.status_code == 202
        assert answer.json() == {
            "refresh": "not_needed",
            "flag_provider": "envfile",
            "detail": "the envfile source follows its store live; nothing to re-read",
        }
    # the hint token opens nothing else
    assert (
        svc.http.get("/api/whatsapp/fallbacks", headers={"Authorization": "Bearer hint-token-0123456789"}).status_code
        == 401
    )
    assert "hint-token-0123456789" not in svc.log_file.read_text()


@pytest.mark.slow
def test_a_drill_of_a_three_replica_fleet_on_postgresql_times_each_replica(tmp_path, sandbox, postgres):
    from rollout.booking.flags.postgres import FlagFollower
    from rollout.flags.postgres import PostgresFlags
    from rollout.playbook.model import FlagSpec
    from rollout.util.clock import SystemClock

    url = postgres.database()
    flags = PostgresFlags(FlagSpec(backend="postgres", database="${FLAG_DB_URL}"), "production", tmp_path, url)
    flags.set(enabled=True, percent=50)
    replicas = []
    for i in (1, 2, 3):
        (tmp_path / f"r{i}").mkdir()
        follower = FlagFollower(url, "production", f"r{i}", poll=0.5)
        env = base_env(sandbox.api_url, WHATSAPP_NOTIFICATIONS_ENABLED=False)
        replicas.append(Service(tmp_path / f"r{i}", env, clock=SystemClock(), flag_source=follower, db=url))
    try:
        wait_until(lambda: len([r for r in flags.replicas() if r["applied_version"] == 1]) == 3, timeout=15)
        drill_project(
            tmp_path, 'flag: {backend: postgres, database: "${FLAG_DB_URL}"}', f"service_url: {replicas[0].url}"
        )
        state_url = postgres.database()
        done = rollout(
            tmp_path, "drill", "--env", "production", "--yes", "--json", "--state", state_url, FLAG_DB_URL=url
        )
        assert done.returncode == 0, done.stdout + done.stderr
        report = json.loads(done.stdout)
        [only] = report["drill"]["rounds"]
        assert sorted(only["replicas"]) == ["r1", "r2", "r3"] and all(
            ms is not None for ms in only["replicas"].values()
        )
        # the row exactly as found (its version moved on: off, then back), and every replica applied it
        assert flags.state() == (True, 50) and flags.version() == 3
        for replica in replicas:
            seen = replica.metrics(1)
            assert (seen["flag_enabled"], seen["rollout_percent"], seen["flag_version"]) == (True, 50, 3)
        # recorded in the shared state as a drill, and the lock given back
        from rollout.engine.pgstate import PgStateStore

        state = PgStateStore(state_url)
        try:
            actions = [a["action"] for a in state.audit_log("production")]
            assert "drill_finished" in actions and "flag_off" not in actions
            assert state.holder("production") is None
        finally:
            state.close()
    finally:
        flags.close()
        for replica in replicas:
            replica.close()


def test_a_flag_off_is_obeyed_at_any_percentage_a_restore_only_at_the_one_found():
    from rollout.engine.replicas import Reading, obeys

    off_at_10 = Reading(False, 10, "off (10%)", 0.0)
    # timing a flag-off: off is off, whatever percentage the replica still shows
    assert obeys(off_at_10, False, 0)
    # a restore to "off at 0 %" waits until the replica shows 0 %, as the env file holds it
    assert not obeys(off_at_10, False, 0, exact=True)
    assert obeys(Reading(False, 0, "off (0%)", 0.0), False, 0, exact=True)
    assert not obeys(Reading(True, 10, "on (10%)", 0.0), False, 10, exact=True)
