"""``rollout backtest`` on runs recorded in the test: a breached ramp (rolled back at 25 %) and a healthy
one (to 100 %), made by the real engine against the real service and sandbox, replayed with the same
playbook (every verdict identical), a stricter one and a looser one; and it writes nothing."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from click.testing import CliRunner

from rollout.cli import cli
from rollout.engine import runner
from tests.support.engine_harness import EngineWorld

#: one worker builds the module's recorded runs (two real ramps) once: spread over workers, each built them again
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("backtest")]

LATENCY = (
    "      - {metric: error_rate, target: 1%, alert: 5%}\n      - {metric: avg_latency_ms, target: 2000, alert: 5000}"
)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One state file holding a breached run, then (resumed) a healthy one."""
    from tests.support.harness import Sandbox

    monkeypatch = pytest.MonkeyPatch()
    sandbox = Sandbox()
    tmp = tmp_path_factory.mktemp("backtest")
    world = EngineWorld(tmp, sandbox, extra_metrics=LATENCY)
    world.environ(monkeypatch)
    try:
        world.breach_at(25)
        breached = world.advance()
        assert breached.status == "rolled_back", breached.as_dict()
        world.clock.on_sleep.clear()
        sandbox.faults(error_rate=0.0)
        world.clock.advance(120)  # the breach's failed sends are out of every window
        runner.resume(world.project, "production", "fixed", world.clock)
        world.clock.on_sleep.append(world.traffic(40))
        healthy = world.advance()
        assert healthy.status == "completed", healthy.as_dict()
        yield world, monkeypatch
    finally:
        world.close()
        sandbox.close()
        monkeypatch.undo()


def _snapshot(world: EngineWorld) -> tuple:
    state = world.project.state()
    try:
        return (
            [vars(row) for row in state.all()],
            state.audit_log("production", limit=100_000),
            len(state.verdicts("production", limit=100_000)),
            world.service.env_file.read_text(),
        )
    finally:
        state.close()


def backtest(world: EngineWorld, playbook, *args: str, state=None):
    result = CliRunner().invoke(
        cli,
        [
            "backtest",
            "--env",
            "production",
            "--playbook",
            str(playbook),
            "--environments",
            str(world.tmp / "environments"),
            "--state",
            str(state or world.tmp / "state.db"),
            *args,
        ],
    )
    return result


def _candidate(world: EngineWorld, name: str, old: str, new: str):
    text = world.playbook.read_text()
    assert old in text
    path = world.tmp / "playbooks" / name
    path.write_text(text.replace(old, new))
    return path


@pytest.fixture
def no_writes(recorded, monkeypatch):
    """Fails the test if anything opens a flag backend; checks the record is unchanged afterwards."""
    world, _ = recorded

    def refuse(*args, **kwargs):
        raise AssertionError("a backtest opened a flag backend")

    monkeypatch.setattr("rollout.engine.project.Project.flags", refuse)
    monkeypatch.setattr("rollout.flags.make_flags", refuse)
    before = _snapshot(world)
    yield world
    assert _snapshot(world) == before


def test_the_same_playbook_replays_every_verdict_exactly(no_writes, tmp_path):
    world = no_writes
    junit = tmp_path / "backtest.xml"
    result = backtest(world, world.playbook, "--json", "--junit", str(junit))
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    breached, healthy = data["runs"]
    assert (breached["recorded"], breached["replayed"]) == ("rolled_back", "rolled_back")
    assert (
        breached["replayed_off_at"] is not None
        and breached["summary"] == "would have rolled back at the same evaluation"
    )
    assert (healthy["recorded"], healthy["replayed"]) == ("completed", "completed")
    rows = [row for run in data["runs"] for step in run["steps"] for row in step["evaluations"]]
    assert len(rows) >= 10
    for row in rows:
        assert row["replayed"] == row["recorded"], row
        assert row["replayed_metrics"] == row["recorded_metrics"], row
        assert (
            row["replayed_summary"].split(";")[0].split(":")[0] == row["recorded_summary"].split(";")[0].split(":")[0]
        )
    assert [s["percent"] for s in healthy["steps"]] == [10, 25, 50, 100]
    assert [s["decided"] for s in healthy["steps"]] == ["pass"] * 4
    assert data["summary"] == [
        "1 of 1 rolled-back runs would have been rolled back (at the same evaluations)",
        "0 of 1 healthy runs would have been rolled back",
    ]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "0"


def test_a_stricter_latency_gate_would_have_rolled_back_the_healthy_run_and_ci_refuses_it(no_writes, tmp_path):
    world = no_writes
    stricter = _candidate(
        world,
        "stricter.yaml",
        "{metric: avg_latency_ms, target: 2000, alert: 5000}",
        "{metric: avg_latency_ms, target: 0.0001, alert: 0.0002}\n    confidence: 0",
    )
    junit, html = tmp_path / "b.xml", tmp_path / "b.html"
    result = backtest(world, stricter, "--json", "--junit", str(junit), "--html", str(html))
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    breached, healthy = data["runs"]
    # the breach was at 25 %; the stricter gate fails at 10 %, on latency, before it
    assert breached["replayed"] == "rolled_back" and breached["replayed_off_at"] < breached["recorded_off_at"]
    assert breached["summary"].startswith("would have rolled back ") and breached["summary"].endswith(" earlier")
    assert breached["steps"][0]["percent"] == 10 and breached["steps"][0]["decided"] == "fail"
    assert healthy["replayed"] == "rolled_back" and healthy["regressed"]
    assert healthy["summary"] == "would have rolled back this healthy run (recorded: completed)"
    assert "1 of 1 healthy runs would have been rolled back" in data["summary"]
    [failure] = ET.parse(junit).getroot().iter("failure")
    assert failure.get("type") == "would_roll_back_healthy"
    page = html.read_text()
    assert page.count("<svg") >= 3 and "would have rolled back this healthy run" in page
    assert "avg_latency_ms" in page


def test_a_looser_gate_would_have_missed_the_breach(no_writes):
    world = no_writes
    looser = _candidate(
        world,
        "looser.yaml",
        "{metric: success_rate, target: 95%, alert: 90%}\n      - {metric: error_rate, target: 1%, alert: 5%}",
        "{metric: success_rate, target: 50%, alert: 0%}\n      - {metric: error_rate, target: 99%, alert: 100%}",
    )
    result = backtest(world, looser)
    assert result.exit_code == 1, result.output
    assert "would NOT have rolled back" in result.output
    assert "0 of 1 rolled-back runs would have been rolled back" in result.output
    assert "0 of 1 healthy runs would have been rolled back" in result.output
    data = json.loads(backtest(world, looser, "--json").output)
    breached = data["runs"][0]
    assert breached["replayed"] == "held"
    assert any("had not decided when the recorded step ended" in n for n in breached["notes"])


def test_older_records_replay_what_they_can_and_say_what_they_lack(no_writes, tmp_path):
    """A record from before readings were kept: the rates replay from their values and samples, the
    mean latency cannot (its spread was not kept) and is named."""
    import shutil
    import sqlite3

    world = no_writes
    old = tmp_path / "old.db"
    shutil.copy(world.tmp / "state.db", old)
    db = sqlite3.connect(old)
    assert db.execute("SELECT COUNT(*) FROM verdicts WHERE readings IS NULL").fetchone()[0] == 0
    db.execute("UPDATE verdicts SET readings = NULL")
    db.commit()
    db.close()
    result = backtest(world, world.playbook, "--json", state=old)
    data = json.loads(result.output)
    notes = [n for run in data["runs"] for n in run["notes"]]
    assert any("avg_latency_ms: recorded before readings were kept" in n for n in notes), notes
    assert any("from records older than readings" in n for n in notes)
    rows = [row for run in data["runs"] for step in run["steps"] for row in step["evaluations"]]
    for row in rows:
        for metric in ("success_rate", "error_rate"):
            assert row["replayed_metrics"][metric] == row["recorded_metrics"][metric], row
    assert data["runs"][0]["replayed"] == "rolled_back"


def test_bad_options_are_one_line(recorded):
    from tests.cli.test_cli_engine import rollout

    world, _ = recorded
    paths = ("--playbook", str(world.playbook), "--environments", "environments", "--state", "state.db")
    for args, said in (
        (("--from", "yesterday", "--to", "now"), "--from: expected an ISO 8601 time"),
        (("--from", "1000"), "--from and --to go together"),
        (("--percent", "25"), "--percent goes with --from and --to"),
        (("--from", "2000", "--to", "1000"), "gate 'g' has no provider metric"),
    ):
        proc = rollout(world.tmp, "backtest", "--env", "production", *paths, *args)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert said in proc.stderr and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
