"""Crash points: the engine killed (``os._exit``, as ``kill -9``) at each point between the steps of a
ramp. For every point, the audit names every flag value the target saw, and ``advance`` resumes."""

from __future__ import annotations

import pytest

from rollout.engine.crashpoints import EXIT_CRASHED, VARIABLE
from rollout.engine.flagwrites import COMPLETIONS, INTENT
from rollout.flags import FlagStore
from tests.cli.test_cli_engine import project, rollout, state_of  # noqa: F401 - the fixture

#: starts real servers (or kills real processes): outside the fast loop
pytestmark = pytest.mark.slow

FAST = {"HOLD": "0.3s", "MAX_HOLD": "0.3s"}

#: every point between the writes of the test playbook's configure step and its 10 -> 50 ramp
POINTS = [
    "configure.after_intent",
    "configure.after_write",
    "configure.after_record",
    "ramp.after_intent:10",
    "ramp.after_write:10",
    "ramp.after_record:10",
    "ramp.after_accept:10",
    "ramp.after_intent:50",
    "ramp.after_write:50",
    "ramp.after_record:50",
]


def advance_until_not_held(cwd, **extra: str):
    """``advance --approve`` again each time a hold without traffic waits for approval."""
    runs = []
    for _ in range(4):
        runs.append(rollout(cwd, "advance", "--env", "production", "--approve", **FAST, **extra))
        if runs[-1].returncode != 3:
            break
    return runs[-1], "".join(r.stdout for r in runs)


def effective(flag: bool | None, percent: int | None) -> tuple[bool, int | None]:
    """What customers get: off is off whatever the percentage says."""
    return (True, percent) if flag else (False, None)


def named(audit: list[dict]) -> set[tuple[bool, int | None]]:
    """The flag values the audit names, announced or done."""
    values = set()
    for entry in audit:
        if entry["action"] == INTENT:
            values.add(effective(entry["detail"]["flag"], entry["detail"]["percent"]))
        elif entry["action"] == "ramp":
            values.add(effective(True, entry["detail"]["percent"]))
    return values


@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_each_point_leaves_the_flag_named_and_advance_resumes(project, point):  # noqa: F811
    cwd, service = project
    crashed, _ = advance_until_not_held(cwd, **{VARIABLE: point})
    assert crashed.returncode == EXIT_CRASHED, crashed.stdout + crashed.stderr
    seen = effective(*FlagStore(service.env_file).state())
    _, audit, holder = state_of(cwd)
    assert holder is not None  # it died holding its lock, as a killed process does
    # off, as the service started, or a value the audit names
    assert seen in named(audit) | {(False, None)}, (seen, audit)

    resumed, said = advance_until_not_held(cwd)
    assert resumed.returncode == 0, said + resumed.stderr
    assert "stale lock" in said
    state, audit, holder = state_of(cwd)
    assert holder is None and state.status == "completed", state
    assert FlagStore(service.env_file).state() == (True, 50)
    # each percentage recorded done once, in order; a write cut short is said and made again
    assert [a["detail"]["percent"] for a in audit if a["action"] == "ramp"] == [10, 50]
    if point.split(":")[0] in ("ramp.after_intent", "ramp.after_write"):
        assert f"an earlier run stopped while writing flag on for {point.split(':')[1]}%" in said
    # every write that completed was announced first, and carries its announcement's id
    announced = [a["detail"]["write"] for a in audit if a["action"] == INTENT]
    done = [a["detail"]["write"] for a in audit if a["action"] in COMPLETIONS]
    assert set(done) <= set(announced) and len(done) == len(set(done))
    for entry in audit:
        if entry["action"] in COMPLETIONS:
            assert announced.index(entry["detail"]["write"]) >= 0


@pytest.mark.parametrize("point", ["flag_off.after_intent", "flag_off.after_write"])
def test_a_rollback_killed_mid_write_is_named_and_a_second_rollback_completes_it(project, point):  # noqa: F811
    cwd, service = project
    held = rollout(cwd, "advance", "--env", "production", **FAST)
    assert held.returncode == 3 and FlagStore(service.env_file).state() == (True, 10)
    crashed = rollout(cwd, "rollback", "--env", "production", "--reason", "pager", **{VARIABLE: point})
    assert crashed.returncode == EXIT_CRASHED, crashed.stdout + crashed.stderr
    state, audit, _ = state_of(cwd)
    # rolled back and announced in one commit before the write: a ramp cannot turn it back on
    assert state.status == "rolled_back" and audit[-1]["action"] == INTENT
    assert audit[-1]["detail"]["flag"] is False
    assert effective(*FlagStore(service.env_file).state()) in named(audit)
    again = rollout(cwd, "rollback", "--env", "production", "--reason", "pager, again")
    assert again.returncode == 0, again.stdout + again.stderr
    assert FlagStore(service.env_file).state()[0] is False
    audit = state_of(cwd)[1]
    offs = [a for a in audit if a["action"] == "flag_off"]
    assert len(offs) == 1 and offs[0]["detail"]["reason"] == "pager, again"
    assert "flag_off_confirmed" in [a["action"] for a in audit]
