"""The rules of waves, decided from the regions' records: when a wave may start, when the exposure
budget holds a write back (and when it is lifted), the same check made again in the transaction
that announces a write (a write another region announced counts), and a ramp whose write is refused
there writes nothing and looks again. Real state stores; the flag and the readings are
:mod:`rollout.testing`'s fakes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from rollout.engine.context import MayNotMoveUp
from rollout.engine.flagwrites import announce
from rollout.engine.pgstate import PgStateStore
from rollout.engine.state import COMPLETED, ROLLED_BACK, RUNNING, StateStore
from rollout.engine.steps import Wait
from rollout.engine.steps import ramp as ramp_step
from rollout.engine.waves import Region, guard_exposure, may_start, over_budget, standing, wave_view, wave_words
from rollout.playbook.load import load_playbook
from rollout.testing import MemoryFlags, ScriptedProvider, fake_context
from rollout.util.clock import ManualClock
from tests.playbook.test_waves_playbook import WAVED

HOUR = 3600.0


@pytest.fixture
def book(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(WAVED)
    return load_playbook(path, environ={})


def region(name: str, wave: int, share: float, percent: int | None = None, **kw) -> Region:
    """A region as its record would say it stands: holding ``percent`` (None: not started)."""
    fields = {
        "status": RUNNING,
        "started": percent is not None,
        "percent": percent,
        "exposed": (percent or 0) / 100,
        "held_since": None,
        "ramp_done": False,
        **kw,
    }
    return Region(name, wave, share, **fields)


def regions(*found: Region) -> dict[str, Region]:
    return {r.name: r for r in found}


def test_a_wave_starts_once_every_region_before_it_has_held_for_after(book):
    phase = book.phases[1]
    now = 10 * HOUR
    waiting = regions(region("eu-west", 0, 0.5), region("us-east", 1, 0.3), region("ap-south", 1, 0.2))
    said = may_start(phase, waiting, "us-east", now)
    assert said is not None and said.at is None and said.exit_code == 3
    assert str(said) == (
        "us-east is in wave 2 of phase production: it starts once every region of wave 1 has held its "
        "percentage for 30m; eu-west has not started"
    )
    assert may_start(phase, waiting, "eu-west", now) is None  # the first wave starts with the phase
    holding = regions(
        region("eu-west", 0, 0.5, 10, held_since=now - 600), region("us-east", 1, 0.3), region("ap-south", 1, 0.2)
    )
    said = may_start(phase, holding, "ap-south", now)
    assert said is not None and said.at == now + 1200  # it says when: the moment eu-west has held 30m
    assert "eu-west has held 10% for 10m (20m to go)" in str(said)
    held = regions(
        region("eu-west", 0, 0.5, 10, held_since=now - 1800), region("us-east", 1, 0.3), region("ap-south", 1, 0.2)
    )
    assert may_start(phase, held, "ap-south", now) is None
    rolled = regions(
        region("eu-west", 0, 0.5, status=ROLLED_BACK), region("us-east", 1, 0.3), region("ap-south", 1, 0.2)
    )
    said = may_start(phase, rolled, "us-east", now)
    assert said is not None and said.at is None and "eu-west of phase production is rolled back" in str(said)


def test_the_budget_holds_a_later_waves_write_until_the_regions_before_it_have_held_their_last_percentage(book):
    phase = book.phases[1]  # weights 50/30/20, max_exposure 30 %
    now = 10 * HOUR
    found = regions(
        region("eu-west", 0, 0.5, 50, held_since=now - 3 * HOUR),
        region("us-east", 1, 0.3, 10, held_since=now - HOUR),
        region("ap-south", 1, 0.2, 10, held_since=now - HOUR),
    )
    # 25 + 3 + 2 = 30 % in force: us-east at 50 % would make it 42 %
    held = over_budget(phase, found, "us-east", 50, now)
    assert held is not None and held.kind == "exposure" and held.opens_at is None
    assert held.words() == (
        "exposure budget: 50% in us-east would expose 42% of the phase's customers across its regions, over "
        "max_exposure 30% (now 30%), while eu-west has not held the last percentage of its ramp for 30m"
    )
    assert held.until == "once eu-west has held the last percentage for 30m"
    assert over_budget(phase, found, "us-east", 10, now) is None  # no more than it has: within the budget
    assert over_budget(phase, found, "eu-west", 100, now) is None  # nothing before the first wave
    # eu-west reaches its last percentage: the budget says when it lifts ...
    done = dict(found, **regions(region("eu-west", 0, 0.5, 100, held_since=now - 600, ramp_done=True)))
    held = over_budget(phase, done, "us-east", 50, now)
    assert held is not None and held.opens_at == now + 1200
    # ... and lifts once it has held that for the next wave's `after`
    proven = dict(found, **regions(region("eu-west", 0, 0.5, 100, held_since=now - 1800, ramp_done=True)))
    assert over_budget(phase, proven, "us-east", 50, now) is None
    # a write announced in another region and not recorded yet counts as done
    announced = dict(found, **regions(region("ap-south", 1, 0.2, 10, held_since=now - HOUR, exposed=0.5)))
    assert over_budget(phase, announced, "us-east", 10, now) is not None


def record(state, name: str, now: float, *, percent: int | None, ramp_index: int = 0, applied: bool = True, **kw):
    state.update(
        name,
        now,
        phase="production",
        status=kw.pop("status", RUNNING),
        step_index=kw.pop("step_index", 1),
        ramp_index=ramp_index,
        ramp_applied=applied,
        flag=percent is not None,
        percent=percent,
        run_id="r-" + name,
        **kw,
    )
    if percent is not None:
        state.audit(name, "ramp", now, step="ramp #2", percent=percent)


def test_what_the_records_say_and_the_check_made_again_as_the_write_is_announced(book, tmp_path):
    state = StateStore(tmp_path / "state.db")
    clock = ManualClock()
    now = clock.time()
    try:
        record(state, "eu-west", now - 2 * HOUR, percent=50, ramp_index=1)
        record(state, "us-east", now - HOUR, percent=None, applied=False)
        found = standing(state, book.phases[1])
        assert found["eu-west"].held_since == now - 2 * HOUR and not found["eu-west"].ramp_done
        assert found["us-east"].started and found["us-east"].held_since is None and found["ap-south"].status == "idle"
        view = wave_view(book, state, "us-east", now)
        assert view is not None and (view["wave"], view["waves"], view["regions"]) == (2, 2, ["us-east", "ap-south"])
        assert view["exposure"] == pytest.approx(0.25) and view["budget_in_force"]
        assert wave_words(view) == "wave 2/2 (us-east, ap-south); exposure 25% of max 30%"
        assert wave_view(book, state, "staging", now) is None
        with fake_context(book, state, clock, ScriptedProvider({"success_rate": 1.0}), environment="us-east") as ctx:
            guard_exposure(ctx)
            assert ctx.write_check is not None and ctx.may_move_up() is None  # 10 % there: 28 % in all
            # meanwhile ap-south announces 50 % (10 % of all customers) and has not recorded it yet
            announce(state, "ap-south", clock, "ramp", flag=True, percent=50)
            held = ctx.may_move_up()
            assert held is not None and "would expose 38%" in held.words()
            with pytest.raises(MayNotMoveUp, match="would expose 38%"), state.tx() as db:
                ctx.write_check(db, 10)
    finally:
        state.close()


def test_a_write_refused_as_it_is_announced_writes_nothing_and_the_ramp_looks_again(book, tmp_path):
    state = StateStore(tmp_path / "state.db")
    clock = ManualClock()
    flags = MemoryFlags()
    try:
        record(state, "us-east", clock.time(), percent=None, applied=False)
        with fake_context(
            book, state, clock, ScriptedProvider({"success_rate": 1.0}), flags=flags, environment="us-east"
        ) as ctx:

            def taken(db, percent):
                raise MayNotMoveUp("another region took the budget first")

            ctx.write_check = taken
            step = book.phases[1].steps[1]
            result = ramp_step.tick(ctx, step, "ramp #2")
            assert isinstance(result, Wait) and result.at == clock.time() + book.interval
            assert flags.writes == [] and flags.state() == (False, None)
            actions = [a["action"] for a in state.audit_log("us-east")]
            assert "flag_intent" not in actions and "ramp" not in actions
            assert state.get("us-east").ramp_applied is False
    finally:
        state.close()


@pytest.mark.slow
def test_on_postgresql_two_regions_checking_the_budget_at_once_take_turns(postgres):
    url = postgres.database()
    first, second = PgStateStore(url), PgStateStore(url)
    entered: list[str] = []
    try:

        def hold_it() -> None:
            with first.tx() as db:
                first.serialize(db, "exposure regions production")
                entered.append("first")
                time.sleep(0.5)
                entered.append("first done")

        worker = threading.Thread(target=hold_it)
        worker.start()
        while not entered:
            time.sleep(0.01)
        with second.tx() as db:
            second.serialize(db, "exposure regions production")
            entered.append("second")
        worker.join()
        assert entered == ["first", "first done", "second"]
        with second.tx() as db:  # another phase's key does not wait
            second.serialize(db, "exposure regions staging")
    finally:
        first.close()
        second.close()


def test_sqlite_needs_no_lock_its_transaction_is_the_only_writer(tmp_path):
    state = StateStore(Path(tmp_path) / "s.db")
    try:
        with state.tx() as db:
            state.serialize(db, "anything")
            state.update("eu-west", 1.0, db=db, status=COMPLETED)
        assert state.get("eu-west").status == COMPLETED
    finally:
        state.close()
