"""When a ramp may move up: deploy windows, freezes, a start and a cutoff. Pure: no clock, no I/O.

An environment file and a phase may each say ``windows:`` (recurring weekly, each in an IANA time
zone), ``freeze:`` (one-off periods, yearly ones and weekly ones, each with a reason), ``start_at:``
and ``cutoff:``. :meth:`Schedule.of` combines them, the strictest winning: a time must lie in one
window of *each* side that lists windows and in no freeze of either; the later start and the earlier
cutoff count. :meth:`Schedule.at` answers, for one instant, whether a ramp may move up, why not,
and when it next may. Local times follow the zone's rules on each date, so a window of
``09:00-16:00 Europe/Berlin`` opens at 08:00 UTC in winter and 07:00 UTC in summer.

None of this can delay a flag-off: it only ever says whether a ramp may *move up*.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

_DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: how far ahead the next opening is looked for; beyond it, "not within a year"
HORIZON_S = 400 * 86_400.0


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; a ValueError naming it when it is unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin or UTC)") from None


def _zone_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an IANA time zone like Europe/Berlin")
    zone(value.strip())
    return value.strip()


def _days(value: Any) -> tuple[int, ...]:
    """``Mon-Thu``, ``Mon,Wed,Fri``, ``Fri-Mon`` (wraps), ``daily``, or a list of those -> weekdays 0-6."""
    parts = value if isinstance(value, list) else [value]
    found: set[int] = set()
    for part in parts:
        if not isinstance(part, str) or not part.strip():
            raise ValueError("days are names like Mon-Thu, Sat,Sun or daily")
        for item in part.replace(" ", "").lower().split(","):
            if item in ("daily", "everyday", "all"):
                found.update(range(7))
                continue
            first, _, last = item.partition("-")
            a = _day(first, item)
            b = _day(last, item) if last else a
            day = a
            while True:
                found.add(day)
                if day == b:
                    break
                day = (day + 1) % 7
    if not found:
        raise ValueError("no days given")
    return tuple(sorted(found))


_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _day(name: str, item: str) -> int:
    for index, (short, full) in enumerate(zip(_DAY_NAMES, _FULL_NAMES, strict=True)):
        if name in (short, full):
            return index
    raise ValueError(f"{item!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun (ranges like Mon-Thu)")


_HOURS = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def _hours(value: Any) -> tuple[int, int]:
    """``09:00-16:00`` -> minutes from midnight (start, end); an end at or before the start runs past
    midnight (``22:00-06:00``); ``24:00`` is the end of the day."""
    match = _HOURS.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected hours like 09:00-16:00, got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 24 * 60:
        raise ValueError(f"{value!r}: hours run from 00:00 to 24:00")
    if start == end:
        raise ValueError(f"{value!r}: a window needs a start and a different end")
    return start, end


def _text(value: Any) -> Any:
    """YAML reads ``2026-12-20`` as a date and ``2026-12-20 09:00:00`` as a datetime: back to text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _local(day: date, minutes: int, tz: ZoneInfo) -> float:
    """The instant of ``minutes`` after midnight on ``day`` in ``tz`` (24:00 is the next midnight).
    A wall time that does not exist (skipped by a DST change) falls after the change, as PEP 495 says."""
    if minutes >= 24 * 60:
        return _local(day + timedelta(days=1), minutes - 24 * 60, tz)
    moment = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=tz)
    return moment.timestamp()


def _local_dates(lo: float, hi: float, tz: ZoneInfo) -> Iterator[date]:
    day = datetime.fromtimestamp(lo, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(hi, tz).date() + timedelta(days=1)
    while day <= last:
        yield day
        day += timedelta(days=1)


class _Keys(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- how each is written, for the JSON Schema editors check a file against (``rollout schema``) ----
_DAYS_WRITTEN: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
    "description": "Mon-Thu, Sat,Sun, daily, or a list of those",
}
_HOURS_WRITTEN: dict[str, Any] = {"type": "string", "pattern": _HOURS.pattern, "description": "09:00-16:00"}


def _or_null(written: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [written, {"type": "null"}]}


def _also_one_line(schema: dict[str, Any]) -> None:
    """A window may also be written in one line (see :class:`Window`)."""
    whole = dict(schema)
    schema.clear()
    schema["anyOf"] = [whole, {"type": "string", "description": "DAYS HH:MM-HH:MM ZONE: Mon-Thu 09:00-16:00 UTC"}]


def _one_or_a_list(schema: dict[str, Any]) -> None:
    """A list of them, or one alone (``ScheduleKeys._listed`` takes either)."""
    item = schema.pop("items")
    schema.pop("type", None)
    schema["anyOf"] = [{"type": "array", "items": item}, item]


class Window(_Keys):
    """A recurring weekly window: ``{days: Mon-Thu, hours: "09:00-16:00", timezone: Europe/Berlin}``,
    or the same in one line: ``Mon-Thu 09:00-16:00 Europe/Berlin``."""

    model_config = ConfigDict(json_schema_extra=_also_one_line)

    days: Annotated[tuple[int, ...], BeforeValidator(_days), WithJsonSchema(_DAYS_WRITTEN)]
    hours: Annotated[tuple[int, int], BeforeValidator(_hours), WithJsonSchema(_HOURS_WRITTEN)]
    timezone: Annotated[str, BeforeValidator(_zone_name)]

    @model_validator(mode="before")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        if isinstance(value, str):
            words = value.split()
            if len(words) != 3:
                raise ValueError(
                    f"{value!r}: write a window as 'DAYS HH:MM-HH:MM ZONE' (Mon-Thu 09:00-16:00 Europe/Berlin) "
                    "or as {days, hours, timezone}"
                )
            return {"days": words[0], "hours": words[1], "timezone": words[2]}
        return value

    def spans(self, lo: float, hi: float) -> Iterator[tuple[float, float]]:
        """Every opening of this window that overlaps ``[lo, hi)``, as (start, end) instants."""
        return _weekly(self.days, self.hours, self.timezone, lo, hi)

    def describe(self) -> str:
        return f"{_day_text(self.days)} {_clock(self.hours[0])}-{_clock(self.hours[1])} {self.timezone}"


def _weekly(
    days: tuple[int, ...], hours: tuple[int, int], tz_name: str, lo: float, hi: float
) -> Iterator[tuple[float, float]]:
    """The periods of ``hours`` on each of ``days`` (local to ``tz_name``) that overlap ``[lo, hi)``."""
    tz = zone(tz_name)
    start, end = hours
    for day in _local_dates(lo, hi, tz):
        if day.weekday() not in days:
            continue
        s = _local(day, start, tz)
        e = _local(day if end > start else day + timedelta(days=1), end, tz)
        if s < hi and e > lo:
            yield s, e


def _day_text(days: tuple[int, ...]) -> str:
    if len(days) == 7:
        return "daily"
    names = [_DAY_NAMES[d].capitalize() for d in days]
    if len(days) > 2 and days == tuple(range(days[0], days[-1] + 1)):
        return f"{names[0]}-{names[-1]}"
    return ",".join(names)


_ONE_OFF = re.compile(r"^\d{4}-\d{2}-\d{2}")
_YEARLY = re.compile(r"^(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?$")


class Freeze(_Keys):
    """A period in which no ramp moves up, with its ``reason``. One of three shapes:
    one-off (``from: 2026-11-26``, ``to: 2026-11-30T18:00``), yearly (``from: "12-20"``,
    ``to: "01-04"``: month-day, every year) or weekly (``days``, ``hours`` as a window's).
    A date without a time starts at 00:00 (``from``) or ends at 24:00 (``to``): the day is frozen.
    Times are in ``timezone`` unless they carry an offset (``2026-11-26T00:00+01:00``)."""

    reason: str = Field(min_length=1, max_length=200)
    start: Annotated[str | None, BeforeValidator(_text)] = Field(None, alias="from")
    end: Annotated[str | None, BeforeValidator(_text)] = Field(None, alias="to")
    days: Annotated[
        tuple[int, ...] | None,
        BeforeValidator(lambda v: None if v is None else _days(v)),
        WithJsonSchema(_or_null(_DAYS_WRITTEN)),
    ] = None
    hours: Annotated[
        tuple[int, int] | None,
        BeforeValidator(lambda v: None if v is None else _hours(v)),
        WithJsonSchema(_or_null(_HOURS_WRITTEN)),
    ] = None
    timezone: Annotated[str | None, BeforeValidator(lambda v: None if v is None else _zone_name(v))] = None

    @model_validator(mode="after")
    def _one_shape(self) -> Freeze:
        weekly = self.days is not None or self.hours is not None
        dated = self.start is not None or self.end is not None
        if weekly == dated:
            raise ValueError("a freeze is either from/to (dates) or days/hours (weekly), with a reason")
        if weekly:
            if self.days is None or self.hours is None or self.timezone is None:
                raise ValueError("a weekly freeze needs days, hours and timezone")
            return self
        if self.start is None or self.end is None:
            raise ValueError("a freeze needs both from and to")
        kinds = {bool(_YEARLY.match(self.start)), bool(_YEARLY.match(self.end))}
        if kinds == {True}:
            if self.timezone is None:
                raise ValueError("a yearly freeze needs a timezone")
            self._yearly_parts(self.start)
            self._yearly_parts(self.end)
            if self.start == self.end:
                raise ValueError("from and to are the same moment")
            return self
        if kinds != {False}:
            raise ValueError("from and to are both dates (2026-12-20) or both month-days every year (12-20)")
        if parse_instant(self.start, self.timezone, end_of_day=False) >= parse_instant(
            self.end, self.timezone, end_of_day=True
        ):
            raise ValueError(f"from ({self.start}) must be before to ({self.end})")
        return self

    @staticmethod
    def _yearly_parts(text: str) -> tuple[int, int, int | None]:
        match = _YEARLY.match(text)
        assert match is not None
        month, day = int(match.group(1)), int(match.group(2))
        minutes = int(match.group(3)) * 60 + int(match.group(4)) if match.group(3) else None
        try:
            date(2000, month, day)  # a leap year: 02-29 is a day
        except ValueError:
            raise ValueError(f"{text!r} is not a month-day (MM-DD)") from None
        if minutes is not None and minutes > 24 * 60:
            raise ValueError(f"{text!r}: a time runs from 00:00 to 24:00")
        return month, day, minutes

    def spans(self, lo: float, hi: float) -> Iterator[tuple[float, float]]:
        """Every period of this freeze that overlaps ``[lo, hi)``."""
        if self.days is not None:
            assert self.hours is not None and self.timezone is not None
            yield from _weekly(self.days, self.hours, self.timezone, lo, hi)
            return
        assert self.start is not None and self.end is not None
        if not _YEARLY.match(self.start):
            s = parse_instant(self.start, self.timezone, end_of_day=False)
            e = parse_instant(self.end, self.timezone, end_of_day=True)
            if s < hi and e > lo:
                yield s, e
            return
        assert self.timezone is not None
        tz = zone(self.timezone)
        (m1, d1, t1), (m2, d2, t2) = self._yearly_parts(self.start), self._yearly_parts(self.end)
        first = datetime.fromtimestamp(lo, tz).year - 1
        for year in range(first, datetime.fromtimestamp(hi, tz).year + 1):
            begin = _month_day(year, m1, d1)
            later = (m2, d2, t2 if t2 is not None else 24 * 60) <= (m1, d1, t1 or 0)
            finish = _month_day(year + 1 if later else year, m2, d2)
            s = _local(begin, t1 or 0, tz)
            e = _local(finish, t2 if t2 is not None else 24 * 60, tz)
            if s < hi and e > lo:
                yield s, e

    def describe(self) -> str:
        if self.days is not None:
            assert self.hours is not None
            when = f"{_day_text(self.days)} {_clock(self.hours[0])}-{_clock(self.hours[1])} {self.timezone}"
        elif self.start is not None and _YEARLY.match(self.start):
            when = f"every year {self.start} to {self.end} {self.timezone}"
        else:
            when = f"{self.start} to {self.end}" + (f" {self.timezone}" if self.timezone else "")
        return f"{when}: {self.reason}"


def _month_day(year: int, month: int, day: int) -> date:
    try:
        return date(year, month, day)
    except ValueError:  # 02-29 in a year without it
        return date(year, month, 28)


_ZONED = re.compile(r"^(\S+(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?)\s+([A-Za-z_]+(?:/[A-Za-z0-9_+-]+)*)$")


def parse_instant(value: Any, tz_name: str | None = None, end_of_day: bool = False) -> float:
    """Seconds since the epoch from ``2026-12-01T09:00+01:00``, ``2026-12-01T08:00Z``, or a local
    time with its zone: ``2026-12-01 09:00 Europe/Berlin`` (or ``tz_name``). A date alone is its
    00:00 (with ``end_of_day``, the next day's 00:00). A time with neither offset nor zone is refused."""
    text = _text(value)
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a date and time like 2026-12-01T09:00+01:00 or '2026-12-01 09:00 Europe/Berlin'")
    text = text.strip()
    match = _ZONED.match(text)
    if match and not match.group(2).upper().startswith("Z") and not re.match(r"^\d", match.group(2)):
        text, tz_name = match.group(1), match.group(2)
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{value!r}: expected a date and time like 2026-12-01T09:00+01:00 or '2026-12-01 09:00 Europe/Berlin'"
        ) from None
    whole_day = len(text) == 10
    if parsed.tzinfo is None:
        if tz_name is None:
            raise ValueError(f"{value!r}: say its time zone ('{text} Europe/Berlin', or an offset like +01:00)")
        parsed = parsed.replace(tzinfo=zone(tz_name))
    if whole_day and end_of_day:
        return _local(parsed.date(), 24 * 60, parsed.tzinfo)  # type: ignore[arg-type]
    return parsed.timestamp()


Instant = Annotated[
    float,
    BeforeValidator(parse_instant),
    WithJsonSchema({"type": "string", "description": "2026-12-01T09:00+01:00, or '2026-12-01 09:00 Europe/Berlin'"}),
]


class ScheduleKeys(_Keys):
    """The schedule keys an environment file and a phase share."""

    #: when a ramp may move up (none: any time); a time must lie in one of them
    windows: list[Window] = Field(default_factory=list, json_schema_extra=_one_or_a_list)
    #: when no ramp moves up, whatever the windows say
    freeze: list[Freeze] = Field(default_factory=list, json_schema_extra=_one_or_a_list)
    #: armed: nothing runs before it
    start_at: Instant | None = None
    #: the flag goes off if the phase has not completed by then
    cutoff: Instant | None = None

    @field_validator("windows", "freeze", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, dict)) else value

    @model_validator(mode="after")
    def _start_before_cutoff(self) -> ScheduleKeys:
        if self.start_at is not None and self.cutoff is not None and self.cutoff <= self.start_at:
            raise ValueError(f"cutoff ({show(self.cutoff)}) must be after start_at ({show(self.start_at)})")
        return self


def show(ts: float, tz_name: str | None = None) -> str:
    """An instant as people read it: ``Mon 2027-01-04 09:00 CET`` (UTC without a zone)."""
    tz = zone(tz_name) if tz_name else UTC
    return datetime.fromtimestamp(ts, tz).strftime("%a %Y-%m-%d %H:%M %Z").replace(" UTC", "Z")


@dataclass(frozen=True)
class Moment:
    """What the schedule says at ``now``: may a ramp move up, and if not, why and until when."""

    now: float
    allowed: bool
    #: why not (empty when allowed): outside windows, a freeze and its reason, before start_at
    why: tuple[str, ...]
    #: when a ramp may next move up (None: not within a year; ``now`` when allowed)
    opens_at: float | None
    #: the freezes in force now: (reason, until)
    frozen: tuple[tuple[str, float], ...]
    cutoff: float | None
    start_at: float | None

    @property
    def cutoff_passed(self) -> bool:
        return self.cutoff is not None and self.now >= self.cutoff

    @property
    def armed(self) -> bool:
        """Before ``start_at``: nothing runs yet."""
        return self.start_at is not None and self.now < self.start_at


@dataclass(frozen=True)
class Schedule:
    """An environment's and a phase's schedule keys combined: every group of windows must hold,
    no freeze may; the later start and the earlier cutoff count."""

    groups: tuple[tuple[Window, ...], ...] = ()
    freezes: tuple[Freeze, ...] = ()
    start_at: float | None = None
    cutoff: float | None = None

    @classmethod
    def of(cls, *keys: ScheduleKeys | None) -> Schedule:
        given = [k for k in keys if k is not None]
        starts = [k.start_at for k in given if k.start_at is not None]
        cutoffs = [k.cutoff for k in given if k.cutoff is not None]
        return cls(
            tuple(tuple(k.windows) for k in given if k.windows),
            tuple(f for k in given for f in k.freeze),
            max(starts) if starts else None,
            min(cutoffs) if cutoffs else None,
        )

    @property
    def empty(self) -> bool:
        """No key given: the schedule never says no (a playbook without the keys behaves as before)."""
        return not (self.groups or self.freezes or self.start_at is not None or self.cutoff is not None)

    @property
    def zone_name(self) -> str | None:
        """The zone people think in here: the first window's or freeze's."""
        for group in self.groups:
            return group[0].timezone
        return next((f.timezone for f in self.freezes if f.timezone), None)

    def at(self, now: float) -> Moment:
        """May a ramp move up at ``now``? If not, why, and when it next may."""
        why: list[str] = []
        if self.start_at is not None and now < self.start_at:
            why.append(f"armed: starts at {show(self.start_at, self.zone_name)}")
        frozen = tuple((f.reason, e) for f in self.freezes for s, e in f.spans(now, now + 1) if s <= now < e)
        why += [f"frozen until {show(until, self.zone_name)}: {reason}" for reason, until in frozen]
        for group in self.groups:
            if not _inside(group, now):
                why.append(f"outside its windows ({', '.join(w.describe() for w in group)})")
        opens = now if not why else self.next_open(now)
        return Moment(now, not why, tuple(why), opens, frozen, self.cutoff, self.start_at)

    def next_open(self, now: float) -> float | None:
        """The first instant at or after ``now`` at which a ramp may move up (None: not within
        :data:`HORIZON_S`)."""
        t = now
        for _ in range(10_000):
            if t - now > HORIZON_S:
                return None
            if self.start_at is not None and t < self.start_at:
                t = self.start_at
                continue
            ends = [e for f in self.freezes for s, e in f.spans(t, t + 1) if s <= t < e]
            if ends:
                t = max(ends)
                continue
            moved = False
            for group in self.groups:
                if not _inside(group, t):
                    starts = [s for w in group for s, _ in w.spans(t, t + 8 * 86_400) if s > t]
                    if not starts:
                        return None
                    t, moved = min(starts), True
                    break
            if not moved:
                return t
        return None

    def lines(self) -> list[str]:
        """The schedule as written, one line per rule (for ``plan``)."""
        out = [f"window: {', '.join(w.describe() for w in group)}" for group in self.groups]
        out += [f"freeze: {f.describe()}" for f in self.freezes]
        if self.start_at is not None:
            out.append(f"start_at: {show(self.start_at, self.zone_name)}")
        if self.cutoff is not None:
            out.append(
                f"cutoff: {show(self.cutoff, self.zone_name)} (the flag goes off if the phase has not completed)"
            )
        return out

    def now_line(self, now: float) -> str:
        """Where the schedule stands at ``now``, in one line: open, or why not and when it opens."""
        moment = self.at(now)
        if moment.cutoff_passed:
            return "now: the cutoff has passed: the phase may not run (a running one has its flag turned off)"
        if moment.allowed:
            return "now: open (a ramp may move up)"
        opens = "not within a year" if moment.opens_at is None else show(moment.opens_at, self.zone_name)
        return f"now: not moving up: {'; '.join(moment.why)}; next opens {opens}"

    def as_dict(self, now: float) -> dict[str, Any]:
        """What ``plan --json`` and the dashboard show: open now or not, why, when it next opens,
        what is frozen, start and cutoff."""
        moment = self.at(now)
        tz = self.zone_name
        return {
            "open": moment.allowed,
            "why": list(moment.why),
            "next_open": None if moment.opens_at is None else show(moment.opens_at, tz),
            "next_open_ts": moment.opens_at,
            "frozen": [{"reason": r, "until": show(u, tz)} for r, u in moment.frozen],
            "windows": [[w.describe() for w in group] for group in self.groups],
            "freezes": [f.describe() for f in self.freezes],
            "start_at": None if self.start_at is None else show(self.start_at, tz),
            "cutoff": None if self.cutoff is None else show(self.cutoff, tz),
            "cutoff_passed": moment.cutoff_passed,
        }


def _inside(group: tuple[Window, ...], t: float) -> bool:
    return any(s <= t < e for w in group for s, e in w.spans(t, t + 1))
