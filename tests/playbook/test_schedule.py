"""Deploy windows, freezes, start and cutoff as pure decisions (:mod:`rollout.playbook.schedule`):
weekends, both DST changes, freezes across the new year, and every bad key named with its line."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from rollout.playbook.environments import load_environment
from rollout.playbook.schedule import Freeze, Schedule, ScheduleKeys, Window, parse_instant, show
from rollout.util.errors import ConfigError

BERLIN_WEEKDAYS = "Mon-Fri 09:00-17:00 Europe/Berlin"


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def schedule(**keys: object) -> Schedule:
    return Schedule.of(ScheduleKeys.model_validate(keys))


def test_a_window_closes_for_the_weekend_and_says_when_it_opens():
    s = schedule(windows=[BERLIN_WEEKDAYS])
    friday_evening = utc(2026, 1, 9, 16, 30)  # 17:30 in Berlin (CET, +1)
    moment = s.at(friday_evening)
    assert not moment.allowed
    assert moment.why == ("outside its windows (Mon-Fri 09:00-17:00 Europe/Berlin)",)
    assert moment.opens_at == utc(2026, 1, 12, 8, 0)  # Monday 09:00 CET
    assert show(moment.opens_at, "Europe/Berlin") == "Mon 2026-01-12 09:00 CET"
    assert s.at(utc(2026, 1, 12, 8, 0)).allowed and not s.at(utc(2026, 1, 12, 7, 59)).allowed
    assert s.at(utc(2026, 1, 9, 15, 59)).allowed  # Friday 16:59 in Berlin


@pytest.mark.parametrize(
    ("friday", "monday_opens", "zone"),
    [
        # the last weekend of March: clocks go forward (CET +1 -> CEST +2)
        (utc(2026, 3, 27, 17, 0), utc(2026, 3, 30, 7, 0), "CEST"),
        # the last weekend of October: clocks go back (CEST +2 -> CET +1)
        (utc(2026, 10, 23, 16, 0), utc(2026, 10, 26, 8, 0), "CET"),
    ],
)
def test_across_a_dst_change_the_window_opens_at_the_local_hour(friday, monday_opens, zone):
    s = schedule(windows=[BERLIN_WEEKDAYS])
    moment = s.at(friday)
    assert not moment.allowed and moment.opens_at == monday_opens
    assert show(monday_opens, "Europe/Berlin").endswith(f"09:00 {zone}")


def test_a_window_over_the_skipped_and_the_repeated_hour_is_as_long_as_the_wall_clock_says():
    night = Window.model_validate("Sun 01:00-04:00 Europe/Berlin")
    spring = list(night.spans(utc(2026, 3, 28, 12), utc(2026, 3, 29, 12)))
    autumn = list(night.spans(utc(2026, 10, 24, 12), utc(2026, 10, 25, 12)))
    assert [(e - s) / 3600 for s, e in spring] == [2.0]  # 02:00-03:00 does not exist that night
    assert [(e - s) / 3600 for s, e in autumn] == [4.0]  # 02:00-03:00 happens twice


def test_a_window_past_midnight_belongs_to_the_day_it_starts():
    s = schedule(windows=["Fri 22:00-06:00 UTC"])
    assert s.at(utc(2026, 1, 10, 5, 59)).allowed  # Saturday morning, still Friday's window
    assert not s.at(utc(2026, 1, 10, 6, 0)).allowed
    assert s.at(utc(2026, 1, 10, 6, 0)).opens_at == utc(2026, 1, 16, 22, 0)


def test_a_yearly_freeze_crosses_the_new_year_and_says_its_reason():
    s = schedule(freeze=[{"from": "12-20", "to": "01-04", "timezone": "Europe/Berlin", "reason": "year-end"}])
    moment = s.at(utc(2026, 12, 31, 12))
    assert not moment.allowed and moment.frozen[0][0] == "year-end"
    assert moment.why == ("frozen until Tue 2027-01-05 00:00 CET: year-end",)  # 01-04 is frozen all day
    assert moment.opens_at == utc(2027, 1, 4, 23, 0)
    assert s.at(utc(2026, 12, 19, 22, 59)).allowed and not s.at(utc(2026, 12, 19, 23, 0)).allowed


def test_a_freeze_inside_a_window_opens_when_it_ends_and_a_weekend_freeze_pushes_to_monday():
    s = schedule(
        windows=["Mon-Fri 09:00-17:00 UTC"],
        freeze=[
            {"from": "2026-01-08T12:00", "to": "2026-01-08T14:30", "timezone": "UTC", "reason": "db migration"},
            {"days": "Fri", "hours": "12:00-24:00", "timezone": "UTC", "reason": "no Friday afternoons"},
        ],
    )
    assert s.at(utc(2026, 1, 8, 13)).opens_at == utc(2026, 1, 8, 14, 30)
    friday = s.at(utc(2026, 1, 9, 13))
    assert friday.why == ("frozen until Sat 2026-01-10 00:00Z: no Friday afternoons",)
    assert friday.opens_at == utc(2026, 1, 12, 9)  # the freeze ends Saturday, the window opens Monday


def test_the_environment_and_the_phase_combine_the_strictest_way():
    env = ScheduleKeys.model_validate(
        {"windows": ["Mon-Fri 08:00-18:00 UTC"], "cutoff": "2026-03-31T18:00Z", "start_at": "2026-01-01T00:00Z"}
    )
    phase = ScheduleKeys.model_validate(
        {"windows": ["Tue,Thu 10:00-12:00 UTC"], "cutoff": "2026-02-28T18:00Z", "start_at": "2026-01-05T09:00Z"}
    )
    s = Schedule.of(env, phase)
    assert (s.start_at, s.cutoff) == (utc(2026, 1, 5, 9), utc(2026, 2, 28, 18))
    assert not s.at(utc(2026, 1, 5, 10)).allowed  # Monday: the environment's window, not the phase's
    assert s.at(utc(2026, 1, 5, 10)).opens_at == utc(2026, 1, 6, 10)
    assert s.at(utc(2026, 1, 6, 11)).allowed
    armed = s.at(utc(2026, 1, 2, 10))
    assert armed.armed and armed.why[0] == "armed: starts at Mon 2026-01-05 09:00Z"
    assert s.at(utc(2026, 3, 1)).cutoff_passed


def test_no_keys_never_says_no():
    s = Schedule.of(ScheduleKeys(), None)
    assert s.empty and s.at(0).allowed and s.at(0).opens_at == 0 and not s.at(0).cutoff_passed


def test_instants_need_a_zone_or_an_offset():
    assert parse_instant("2026-12-01 09:00 Europe/Berlin") == utc(2026, 12, 1, 8)
    assert parse_instant("2026-12-01T08:00Z") == parse_instant("2026-12-01T09:00+01:00") == utc(2026, 12, 1, 8)
    assert parse_instant("2026-12-01", "UTC", end_of_day=True) == utc(2026, 12, 2)
    with pytest.raises(ValueError, match="say its time zone"):
        parse_instant("2026-12-01T09:00")
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Berln'"):
        parse_instant("2026-12-01 09:00 Europe/Berln")


def test_freeze_shapes_are_one_of_three():
    with pytest.raises(ValueError, match="either from/to"):
        Freeze.model_validate({"reason": "x", "from": "12-20", "to": "01-04", "days": "Mon", "timezone": "UTC"})
    with pytest.raises(ValueError, match="both dates"):
        Freeze.model_validate({"reason": "x", "from": "12-20", "to": "2027-01-04", "timezone": "UTC"})
    with pytest.raises(ValueError, match="must be before"):
        Freeze.model_validate({"reason": "x", "from": "2027-01-04", "to": "2027-01-01", "timezone": "UTC"})
    with pytest.raises(ValueError, match="reason"):
        Freeze.model_validate({"from": "12-20", "to": "01-04", "timezone": "UTC"})


ENVIRONMENT = """\
name: production
service_url: http://127.0.0.1:9
windows:
  - Mon-Thu 09:00-16:00 Europe/Berlin
  - {days: Fri, hours: "09:00-25:00", timezone: Europe/Berlin}
freeze:
  - {from: "12-20", to: "01-04", reason: year-end}
  - {from: 2026-11-26, to: 2026-11-30, timezone: America/Nowhere, reason: thanksgiving}
cutoff: 2027-03-31T18:00
"""


def test_every_bad_schedule_key_of_an_environment_file_is_named_with_its_line(tmp_path):
    (tmp_path / "production.yaml").write_text(ENVIRONMENT)
    with pytest.raises(ConfigError) as caught:
        load_environment("production", tmp_path)
    message = str(caught.value)
    file = tmp_path / "production.yaml"
    assert f"{file}:5: windows.1.hours: '09:00-25:00': hours run from 00:00 to 24:00" in message
    assert f"{file}:7: freeze.0: a yearly freeze needs a timezone" in message
    assert f"{file}:8: freeze.1.timezone: unknown time zone 'America/Nowhere'" in message
    assert f"{file}:9: cutoff: '2027-03-31T18:00': say its time zone" in message


def test_validate_names_a_bad_phase_window_with_its_line(tmp_path):
    book = tmp_path / "p.yaml"
    book.write_text(
        "version: 1\nname: p\ngates:\n  g: {window: 1m, metrics: [{metric: success_rate, target: 95%, alert: 90%}]}\n"
        "phases:\n  - name: production\n    environment: production\n    windows: [Mon-Thx 09:00-16:00 UTC]\n"
        "    steps:\n      - {kind: configure}\n"
    )
    done = subprocess.run([sys.executable, "-m", "rollout", "validate", str(book)], capture_output=True, text=True)
    assert done.returncode == 2
    assert f"{book}:8: phases.0.windows.0.days: 'mon-thx': days are Mon, Tue" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_shipped_environments_still_load_without_schedule_keys():
    for name in ("dev", "staging", "production"):
        env = load_environment(name, Path(__file__).parents[2] / "environments")
        assert Schedule.of(env).empty
