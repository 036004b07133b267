"""``rollout drill``: a rehearsal of the kill switch against a live environment.

The drill turns the flag on for the share of customers the operator chooses (unless it is on
already: then it drills from where it stands), writes the flag-off, times how long each replica
takes to report it off (:mod:`rollout.engine.replicas`), and restores the flag as it found it.
Every write is the engine's guarded write (announced in the audit before it is made, refused
inside the flag store's lock once the environment was rolled back or someone else wrote the flag),
under the environment's writer lock, and the audit calls it a drill (``drill_*``, never
``flag_off``), so incident reports and the flag-off counts of ``/metrics`` never see it.

- **A real rollback wins**: once a rollback (or any write that is not the drill's) lands during a
  drill, the drill's next write refuses and the drill stops without restoring.
- **Ctrl-C** stops the drill where it is and restores the flag first.
- **A drill that died** (``kill -9``, a crash) between its flag-off and its restore is found by the
  next ``rollout drill`` or ``advance`` (:func:`recover`), which restores the flag as that drill
  found it (unless a rollback or another write came after it) and says so.

Against a flag service the service polls (Unleash), the drill runs two flag-offs side by side:
with the hint a flag-off sends after its write (:mod:`rollout.engine.hints`), and without it
(polling alone: the fallback when a hint is lost).
"""

from __future__ import annotations

import contextlib
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from rollout.engine import hints
from rollout.engine.context import RunContext
from rollout.engine.driver import who_drives
from rollout.engine.flagwrites import INTENT, Announced, after
from rollout.engine.killswitch import RolledBackMeanwhile
from rollout.engine.outcome import RunOutcome
from rollout.engine.replicas import Replicas, replicas_of, time_until
from rollout.engine.state import ROLLED_BACK, StateRecords
from rollout.flags import FlagWriteError
from rollout.playbook.model import RampStep
from rollout.util.errors import EXIT_OK, EXIT_ROLLED_BACK, ConfigError, RolloutError, StateError
from rollout.util.outcomes import ExitCode, Status

STARTED, ROUND, FINISHED, RECOVERED = "drill_started", "drill_round", "drill_finished", "drill_recovered"
#: each drill write (its intent's ``by``) -> the audit action that completes it
COMPLETION = {"drill_arm": "drill_armed", "drill_off": "drill_off", "drill_restore": "drill_restored"}
#: how long every replica has to report the drill's arming and its restore
SETTLE_S = 10.0
#: how far back the audit is searched for a drill that did not finish
LOOK_BACK = 500


class DrillOvertaken(RolloutError):
    """Someone else wrote the flag during the drill (a rollback, a configure): it stands; the drill
    stops and restores nothing."""

    exit_code = EXIT_ROLLED_BACK


@dataclass
class Round:
    """One flag-off of a drill: with the hint or polling alone, and how long each replica took (ms
    after the write returned; None: not within the drill's wait)."""

    hinted: bool
    write_ms: float
    took_ms: dict[str, float | None]
    #: what each replica that did not obey last reported
    said: dict[str, str] = field(default_factory=dict)

    @property
    def slowest_ms(self) -> float | None:
        return _slowest(self.took_ms)

    def late(self, within_s: float) -> list[str]:
        """The replicas that did not obey within ``within_s``."""
        return [n for n, ms in self.took_ms.items() if ms is None or ms > within_s * 1000]

    def record(self) -> dict[str, Any]:
        return {
            "hinted": self.hinted,
            "write_ms": self.write_ms,
            "slowest_ms": self.slowest_ms,
            "replicas": self.took_ms,
            "said": self.said,
        }


@dataclass(frozen=True)
class Plan:
    """What a drill will do, decided before it writes anything."""

    #: the flag as the drill found it: (on?, percentage)
    found: tuple[bool, int | None]
    #: the percentage the flag-off is drilled from
    percent: int
    #: one flag-off per entry: True with the hint, False polling alone
    rounds: tuple[bool, ...]
    replicas: tuple[str, ...]

    @property
    def exposes(self) -> bool:
        """Does the drill change what customers get (some have the feature now, or will while it runs)?"""
        return self.found[0] or self.percent > 0

    def words(self, env: str) -> str:
        """The plan in one line, for the person about to run it."""
        how = "on the found flag" if self.found[0] else f"flag found off: armed at {self.percent}% first"
        offs = " and ".join("with the hint" if hinted else "polling alone" for hinted in self.rounds)
        return (
            f"drill in {env}: {how}; flag-off from {self.percent}% ({offs}); {len(self.replicas)} "
            f"replica(s) timed; then restored to {_shown(self.found)}"
        )


def _shown(flag: tuple[bool, int | None]) -> str:
    return ("on" + (f" for {flag[1]}%" if flag[1] is not None else "")) if flag[0] else "off"


def lowest_ramp_percent(ctx: RunContext) -> int:
    """The lowest percentage of the phase's ramps; 0 (the test cohort: nobody in) without a ramp."""
    found = [p for step in ctx.phase.steps if isinstance(step, RampStep) for p in step.percentages]
    return min(found) if found else 0


def refusal(state: StateRecords, env: str, now: float) -> str | None:
    """Why a drill must not start in ``env`` now (rolled back; someone driving it: an advance holding
    its writer lock, an agent holding its lease), or None."""
    current = state.get(env)
    if current.status == ROLLED_BACK:
        return (
            f"{env} is rolled back ({current.reason}); a drill would turn the feature on again. Run "
            f"`rollout resume --env {env} --reason ...` first if it may go on"
        )
    driver = who_drives(state, current, now)
    if driver is not None:
        return f"{env} is being driven by {driver.words()}; a drill would fight its flag writes: wait for it to finish"
    return None


class _Drill:
    """One drill's writes and records; every write guarded as the module docstring says."""

    def __init__(self, ctx: RunContext, drill_id: str, who: str | None) -> None:
        self.ctx, self.id, self.who = ctx, drill_id, who
        self.env = ctx.env_name
        self.since: int | None = None  # the audit id of drill_started: writes after it that are not ours overtake us

    def audit(self, action: str, **detail: Any) -> None:
        self.ctx.state.audit(self.env, action, self.ctx.clock.time(), who=self.who, drill=self.id, **detail)

    def started(self, **detail: Any) -> None:
        self.ctx.state.update(self.env, self.ctx.clock.time())  # listed from now on (an existing record is untouched)
        self.audit(STARTED, **detail)
        entries = self.ctx.state.audit_log(self.env, limit=20)
        self.since = next(
            e["id"] for e in reversed(entries) if e["action"] == STARTED and e["detail"]["drill"] == self.id
        )

    def guard(self) -> None:
        """Inside the flag store's lock, before each drill write: refuse once a rollback or another
        writer got there."""
        current = self.ctx.state.get(self.env)
        if current.status == ROLLED_BACK:
            raise RolledBackMeanwhile(
                f"{self.env} was rolled back during the drill ({current.reason}); the rollback stands, "
                "the drill restored nothing"
            )
        if self.since is None:
            return
        for entry in self.ctx.state.audit_log(self.env, limit=LOOK_BACK):
            if entry["id"] > self.since and entry["action"] == INTENT and entry["detail"].get("by") not in COMPLETION:
                raise DrillOvertaken(
                    f"the flag of {self.env} was written by {entry['detail'].get('by')} ({entry['actor']}) during "
                    "the drill; that write stands, the drill restored nothing"
                )

    def write(self, by: str, flag: bool, percent: int | None) -> float:
        """One guarded drill write, announced and completed in the audit; how long it took, in ms."""
        clock = self.ctx.clock
        announced = Announced(
            self.ctx.state, self.env, clock, by, flag=flag, percent=percent, check=self.guard, drill=self.id
        )
        began = clock.monotonic()
        self.ctx.flags.set(enabled=flag, percent=percent, guard=announced)
        took = round((clock.monotonic() - began) * 1000, 1)
        after(by, "write")
        self.audit(COMPLETION[by], write=announced.write, flag=flag, percent=percent, write_ms=took)
        after(by, "record")
        return took


@contextlib.contextmanager
def _ctrl_c_after() -> Iterator[None]:
    """Hold a Ctrl-C back until the block (a restore) is done; it then interrupts as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def plan(ctx: RunContext, percent: int | None, compare: bool = True) -> Plan:
    """What a drill of ``ctx``'s environment would do, writing nothing (see :class:`Plan`). The
    flag found on is drilled from where it stands; ``percent`` must then be left out or agree."""
    found = ctx.flags.state()
    if found[0]:
        here = 100 if found[1] is None else found[1]
        if percent is not None and percent != here:
            raise ConfigError(
                f"--percent {percent}: the flag of {ctx.env_name} is on for {here}% of customers now; a drill "
                "turns it off from where it stands (leave --percent out)"
            )
        percent = here
    elif percent is None:
        percent = lowest_ramp_percent(ctx)
    hinted = hints.wants_hints(ctx.flags, ctx.target) and bool(hints.hint_token(ctx.resolved, ctx.target))
    rounds = (True, False) if hinted and compare else (hinted,)
    replicas = replicas_of(ctx)
    try:
        names = tuple(replicas.names)
    finally:
        replicas.close()
    return Plan(found, percent, rounds, names)


def run(
    ctx: RunContext,
    percent: int | None = None,
    within: float = 3.0,
    *,
    compare: bool = True,
    reason: str = "kill-switch drill",
    who: str | None = None,
    confirm: Callable[[Plan], bool] | None = None,
) -> RunOutcome:
    """Drill ``ctx``'s environment (see the module docstring): exit 0 when every replica obeyed every
    flag-off within ``within`` s and the flag is back as found, confirmed by every replica; 1
    otherwise (and when a rollback overtook the drill); 130 after Ctrl-C (restored first).
    ``confirm`` sees the plan before anything is written and may say no."""
    env, state = ctx.env_name, ctx.state
    why = refusal(state, env, ctx.clock.time())
    if why:
        raise StateError(why)
    note = state.acquire(env, ctx.clock.time())  # no advance starts while the drill runs
    try:
        if note:
            state.audit(env, "lock_recovered", ctx.clock.time(), note=note)
        recovered = recover(ctx, who)
        if recovered is not None:
            return recovered
        if state.get(env).status == ROLLED_BACK:  # a rollback may have come between the look and the lock
            raise StateError(str(refusal(state, env, ctx.clock.time())))
        drill_plan = plan(ctx, percent, compare)
        if confirm is not None and not confirm(drill_plan):
            return RunOutcome("drill_cancelled", EXIT_OK, f"drill in {env} not run: nothing was written", env)
        return _drill(ctx, drill_plan, within, reason, who)
    finally:
        state.release(env)


def _drill(ctx: RunContext, drill_plan: Plan, within: float, reason: str, who: str | None) -> RunOutcome:
    env, out = ctx.env_name, ctx.out
    d = _Drill(ctx, uuid.uuid4().hex[:12], who)
    d.started(
        reason=reason,
        found_flag=drill_plan.found[0],
        found_percent=drill_plan.found[1],
        percent=drill_plan.percent,
        within_s=within,
        rounds=["hint" if h else "poll" for h in drill_plan.rounds],
        replicas=list(drill_plan.replicas),
    )
    out.line(drill_plan.words(env), "bold")
    replicas = replicas_of(ctx)
    rounds: list[Round] = []
    problem: str | None = None
    stopped: str | None = None  # why the drill stops early: interrupted, overtaken
    exit_code = EXIT_OK
    try:
        for hinted in drill_plan.rounds:
            on_now = not rounds and drill_plan.found[0]
            if not on_now:
                problem = _arm(d, replicas, drill_plan.percent)
                if problem:
                    break
            rounds.append(_flag_off(d, replicas, hinted, within))
    except KeyboardInterrupt:
        stopped, exit_code = Status.INTERRUPTED, ExitCode.INTERRUPTED
        out.line("drill interrupted: restoring the flag as found", "bold yellow")
    except (RolledBackMeanwhile, DrillOvertaken) as exc:
        stopped, problem = "overtaken", str(exc)
    restored, confirmed = False, False
    if stopped != "overtaken":
        try:
            restored, confirmed, why = _restore(d, replicas, drill_plan.found)
            problem = problem or why
        except KeyboardInterrupt:  # the restore is written (a Ctrl-C waits for the write); not yet seen by all
            restored, stopped, exit_code = True, Status.INTERRUPTED, ExitCode.INTERRUPTED
            problem = problem or "interrupted before every replica reported the restore"
        except (RolledBackMeanwhile, DrillOvertaken) as exc:
            stopped, problem = "overtaken", str(exc)
        except RolloutError as exc:
            problem = f"the restore FAILED, the flag may be left off: {exc}"
    replicas.close()
    late = sorted({name for r in rounds for name in r.late(within)})
    passed = stopped is None and not problem and not late and confirmed and len(rounds) == len(drill_plan.rounds)
    summary = _summary(env, drill_plan, rounds, within, late, problem, stopped, restored, confirmed)
    d.audit(
        FINISHED,
        passed=passed,
        percent=drill_plan.percent,
        within_s=within,
        rounds=[r.record() for r in rounds],
        late=late,
        restored=restored,
        confirmed=confirmed,
        stopped=stopped,
        problem=problem,
        summary=summary,
    )
    if exit_code == EXIT_OK and not passed:
        exit_code = EXIT_ROLLED_BACK
    status = "drill_passed" if passed else "interrupted" if stopped == "interrupted" else "drill_failed"
    details = {"drill": {"passed": passed, "rounds": [r.record() for r in rounds], "late": late, "restored": restored}}
    return RunOutcome(status, exit_code, summary, env, ctx.phase.name, details=details)


def _arm(d: _Drill, replicas: Replicas, percent: int) -> str | None:
    """The flag on for ``percent``%, every replica seen to take it; the problem, or None."""
    ctx = d.ctx
    d.write("drill_arm", True, percent)
    took, said = time_until(replicas, True, percent, ctx.clock.monotonic(), SETTLE_S, ctx.clock)
    if said:
        return f"the drill could not arm the flag: {_late_words(said, SETTLE_S)}"
    ctx.out.line(f"  armed: every replica reports the flag on for {percent}% ({_ms(_slowest(took))})")
    return None


def _flag_off(d: _Drill, replicas: Replicas, hinted: bool, within: float) -> Round:
    """The drill's flag-off (the hint after it, as a real flag-off sends it), each replica timed."""
    ctx = d.ctx
    write_ms = d.write("drill_off", False, None)
    since = ctx.clock.monotonic()
    if hinted:
        hints.send(
            hints.replica_urls(ctx.resolved.env),
            hints.hint_token(ctx.resolved, ctx.target),
            hints.request_of(ctx.target),
        )
    took, said = time_until(replicas, False, None, since, 2 * within, ctx.clock)
    done = Round(hinted, write_ms, took, said)
    d.audit(ROUND, **done.record())
    ctx.out.line(f"  flag-off {'with the hint' if hinted else 'polling alone'} (the write took {_ms(write_ms)}):")
    for name, ms in took.items():
        if ms is not None and ms <= within * 1000:
            ctx.out.line(f"    {name}  obeyed in {_ms(ms)}")
        else:
            late = f"obeyed LATE, in {_ms(ms)}" if ms is not None else f"did NOT obey ({said.get(name)})"
            ctx.out.line(f"    {name}  {late}: over the {within:g}s bound", "bold red")
    return done


def _restore(d: _Drill, replicas: Replicas, found: tuple[bool, int | None]) -> tuple[bool, bool, str | None]:
    """The flag back as found, every replica seen to take it: (written, confirmed, problem)."""
    ctx = d.ctx
    with _ctrl_c_after():
        d.write("drill_restore", found[0], found[1])
    took, said = time_until(replicas, found[0], found[1], ctx.clock.monotonic(), SETTLE_S, ctx.clock, exact=True)
    if said:
        problem = f"the flag was restored to {_shown(found)} but {_late_words(said, SETTLE_S)}"
        ctx.out.line(f"  WARNING: {problem}", "bold red")
        return True, False, problem
    ctx.out.line(f"  restored: every replica reports the flag {_shown(found)}, as found ({_ms(_slowest(took))})")
    return True, True, None


def _slowest(took: dict[str, float | None]) -> float | None:
    values = list(took.values())
    return None if not values or None in values else max(v for v in values if v is not None)


def _ms(ms: float | None) -> str:
    return "?" if ms is None else f"{ms:,.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _late_words(said: dict[str, str], within: float) -> str:
    return "; ".join(f"{name} did not report it within {within:g}s ({what})" for name, what in said.items())


def _summary(
    env: str,
    drill_plan: Plan,
    rounds: list[Round],
    within: float,
    late: list[str],
    problem: str | None,
    stopped: str | None,
    restored: bool,
    confirmed: bool,
) -> str:
    figures = "; ".join(
        f"slowest replica {'with the hint' if r.hinted else 'polling alone'}: {_ms(r.slowest_ms)}" for r in rounds
    )
    where = f"the flag is back {_shown(drill_plan.found)}, as found" if confirmed else ""
    if stopped == "overtaken":
        return f"drill in {env} stopped: {problem}" + (f" ({figures})" if figures else "")
    head = (
        "drill interrupted" if stopped == "interrupted" else "drill passed" if not (late or problem) else "drill FAILED"
    )
    parts = [f"{head} in {env}"]
    if figures:
        parts.append(figures)
    if late:
        parts.append(f"{len(late)} replica(s) did not obey the flag-off within {within:g}s: {', '.join(late)}")
    if problem:
        parts.append(problem)
    if where:
        parts.append(where)
    elif restored and not problem:
        parts.append("the restore is written but not confirmed")
    return "; ".join(parts)


# --- a drill that did not finish -------------------------------------------------------------------


def _unfinished_in(audit: list[dict[str, Any]]) -> dict[str, Any] | None:
    last = next((e for e in reversed(audit) if e["action"] in (STARTED, FINISHED, RECOVERED)), None)
    if last is None or last["action"] == RECOVERED:
        return None
    if last["action"] == FINISHED:  # ended, but its restore failed (not a rollback stopping it): still to do
        if last["detail"].get("restored") or last["detail"].get("stopped") == "overtaken":
            return None
        return next(
            (e for e in reversed(audit) if e["action"] == STARTED and e["detail"]["drill"] == last["detail"]["drill"]),
            None,
        )
    return last


def unfinished(state: StateRecords, env: str) -> dict[str, Any] | None:
    """The ``drill_started`` entry of a drill that did not put the flag back (it died, or its restore
    failed), or None."""
    return _unfinished_in(state.audit_log(env, limit=LOOK_BACK))


def recover(ctx: RunContext, who: str | None = None) -> RunOutcome | None:
    """Finish a drill that died (see the module docstring); the caller holds the writer lock. None
    when there is none; else what was done (its message says it, for the person)."""
    entry = unfinished(ctx.state, ctx.env_name)
    if entry is None:
        return None
    env, detail = ctx.env_name, entry["detail"]
    found = (bool(detail["found_flag"]), detail.get("found_percent"))
    d = _Drill(ctx, detail["drill"], who)
    d.since = entry["id"]
    earlier = f"an earlier drill in {env} (started by {entry['actor']}) did not finish"
    try:
        with _ctrl_c_after():
            d.write("drill_restore", found[0], found[1])
    except (RolledBackMeanwhile, DrillOvertaken) as exc:
        d.audit(RECOVERED, restored=False, problem=str(exc))
        return RunOutcome("drill_recovered", EXIT_OK, f"{earlier}; {exc}", env, ctx.phase.name)
    except RolloutError as exc:  # nothing recorded as done: the next command tries again
        raise FlagWriteError(f"{earlier} and the flag could not be restored to {_shown(found)}: {exc}") from exc
    try:
        replicas = replicas_of(ctx)
    except RolloutError as exc:
        said = {"the replicas": f"cannot be asked: {exc}"}
    else:
        try:
            _, said = time_until(replicas, found[0], found[1], ctx.clock.monotonic(), SETTLE_S, ctx.clock)
        finally:
            replicas.close()
    problem = _late_words(said, SETTLE_S) if said else None
    d.audit(RECOVERED, restored=True, confirmed=not said, found_flag=found[0], found_percent=found[1], problem=problem)
    message = f"{earlier}; the flag is restored to {_shown(found)}, as that drill found it" + (
        f", but {problem}" if problem else ""
    )
    return RunOutcome("drill_recovered", EXIT_ROLLED_BACK if said else EXIT_OK, message, env, ctx.phase.name)


def last_drill(audit: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last drill's figures from an environment's audit, for the dashboard: when, who, passed,
    the percentage, each flag-off's slowest replica and every replica's time (ms); ``unfinished``
    when a drill started after it never ended (it is running, or it died)."""
    last = next((e for e in reversed(audit) if e["action"] == FINISHED), None)
    if last is None and not any(e["action"] == STARTED for e in audit):
        return None
    figures = (
        {
            "ts": last["ts"],
            "who": last["actor"],
            "passed": last["detail"].get("passed"),
            "percent": last["detail"].get("percent"),
            "within_s": last["detail"].get("within_s"),
            "rounds": [
                {
                    "mode": "hint" if r.get("hinted") else "poll",
                    "slowest_ms": r.get("slowest_ms"),
                    "replicas": r.get("replicas"),
                }
                for r in last["detail"].get("rounds") or []
            ],
            "restored": last["detail"].get("confirmed"),
        }
        if last is not None
        else {}
    )
    return {**figures, "unfinished": _unfinished_in(audit) is not None}
