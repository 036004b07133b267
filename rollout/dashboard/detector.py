"""One change detector per dashboard process: it follows every project's state store with one cheap
query a tick (:meth:`StateRecords.fingerprint`), reads only what is new when that changes (audit entries
and verdicts past the last ids seen, the environments' rows, controls, drivers), keeps each
environment's overview row in memory, and hands each change to every subscriber as a numbered batch.

So the page's load is a copy of rows already built, and a hundred open pages cost the store what one
does. The last batches are kept, so a client that reconnects with the id of the last batch it saw is
sent what it missed (:meth:`ChangeDetector.replay`); one too far behind is told to load again.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout.dashboard.driver import NOBODY, candidates, driver
from rollout.dashboard.rows import (
    MARKS,
    audit_line,
    overview_row,
    row_diff,
    steps_timeline,
    verdict_line,
)
from rollout.engine.flagview import flag_on_steps, flag_view, shown_status
from rollout.engine.project import Project
from rollout.engine.state import COMPLETED, Control, EnvState, StateRecords
from rollout.playbook.environments import load_environment
from rollout.playbook.model import Playbook
from rollout.util.clock import Clock
from rollout.util.errors import RolloutError

#: how often the stores are asked whether anything changed (a verdict is on the page within about this)
TICK_S = 0.25
#: how often the drivers are asked again (a terminal can die, a lease expire, without a write)
DRIVERS_EVERY_S = 2.0
#: how often an open environment page's flag is read from its service
FLAG_EVERY_S = 5.0
#: batches kept for clients that reconnect
HISTORY = 4096
#: batches a slow client may have waiting before it is told to load again
BACKLOG = 1024
#: audit entries of a person's hand on a step: the controls are read again after one
HANDS = ("paused", "continued", "promotion_requested")
#: a row's fields that move the environment page's steps timeline
STEP_FIELDS = ("status", "phase", "step", "percent", "paused")


@dataclass
class Batch:
    """What changed in one tick: overview rows (only their changed fields; None: the row is gone) and,
    per environment, what its page adds (new verdicts and audit lines, its steps, its flag)."""

    seq: int
    now: float
    rows: dict[str, dict[str, Any] | None]
    envs: dict[str, dict[str, Any]]
    #: encoded forms, per view (filled by the event stream, in the server's loop)
    encoded: dict[str | None, bytes | None] = field(default_factory=dict)


class Subscription:
    """One client's queue of batches, fed from the detector's thread into the server's loop."""

    #: the stream must end (the server is stopping)
    CLOSE = "close"
    #: the client fell too far behind: it must load again
    OVERFLOW = "overflow"

    def __init__(self, loop: asyncio.AbstractEventLoop, key: str | None) -> None:
        self.loop, self.key = loop, key
        self.queue: asyncio.Queue[Batch | str] = asyncio.Queue()

    def offer(self, item: Batch | str) -> None:
        """Queue ``item`` (in the loop's thread); past :data:`BACKLOG` the client is told to reload."""
        if self.queue.qsize() >= BACKLOG and isinstance(item, Batch):
            item = self.OVERFLOW
        self.queue.put_nowait(item)


@dataclass
class _Project:
    name: str
    index: int
    project: Project
    playbook: Playbook | None = None
    problem: str | None = None
    mtime: int | None = None
    #: environment files read for the status (``completed, flag off`` needs its flag variable)
    environments: dict[str, Any] = field(default_factory=dict)
    #: the environments its phases run in, in playbook order
    names: list[str] = field(default_factory=list)

    def envs(self) -> list[str]:
        return self.names


class _Store:
    """One state store, the projects that read it, and what was last read from it."""

    def __init__(self, projects: list[_Project]) -> None:
        self.projects = projects
        self.state: StateRecords | None = None
        self.fingerprint: tuple[Any, ...] | None = None
        self.audit_id = self.verdict_id = 0
        self.envs: dict[str, EnvState] = {}
        self.last: dict[str, dict[str, Any]] = {}
        self.marks: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.controls: dict[str, Control] = {}
        self.drivers: dict[str, dict[str, Any]] = {}
        self.drivers_at = 0.0
        self.problem: str | None = None

    def open(self) -> StateRecords:
        first = self.projects[0].project
        if self.state is not None and self.state.missing and Path(first.state_path).exists():
            self.close()  # the file a read-only open found missing exists now
        if self.state is None:
            self.state = first.state(read_only=True)
        return self.state

    def close(self) -> None:
        if self.state is not None:
            try:
                self.state.close()
            except Exception:  # noqa: BLE001 - a connection already broken closes as it can
                pass
        self.state = None
        self.fingerprint = None

    def keys_of(self, env: str) -> list[tuple[_Project, str]]:
        """The projects showing ``env``: those whose playbook runs a phase in it; an environment none of
        them runs is shown by the store's first project (it was recorded, a person should see it)."""
        owners = [p for p in self.projects if env in p.envs()]
        return [(p, f"{p.name}/{env}") for p in owners or self.projects[:1]]


class ChangeDetector:
    """Follows ``projects`` (name -> project, in the order given) and fans their changes out."""

    def __init__(self, projects: dict[str, Project], clock: Clock, tick_s: float = TICK_S) -> None:
        self.clock, self.tick_s = clock, tick_s
        #: a process's batches are numbered from 1; a client's id from another process means: reload
        self.boot = secrets.token_hex(4)
        self.projects = [_Project(name, i, p) for i, (name, p) in enumerate(projects.items())]
        by_store: dict[str, list[_Project]] = defaultdict(list)
        for p in self.projects:
            by_store[p.project.state_url or str(Path(p.project.state_path).resolve())].append(p)
        self.stores = [_Store(ps) for ps in by_store.values()]
        self._rows: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._seq = 0
        self._history: deque[Batch] = deque(maxlen=HISTORY)
        self._subs: set[Subscription] = set()
        self._flags: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._flag_due = threading.Event()
        self._threads: list[threading.Thread] = []
        #: queries asked of the stores and ticks done, for tests and benchmarks (neither grows with clients)
        self.reads = self.ticks = 0

    # --- life --------------------------------------------------------------------------------------

    def start(self) -> ChangeDetector:
        self._threads = [
            threading.Thread(target=self._run, name="dashboard-detector", daemon=True),
            threading.Thread(target=self._probe_flags, name="dashboard-flags", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._flag_due.set()
        for thread in self._threads:
            thread.join(10)
        for store in self.stores:
            store.close()

    def close_streams(self) -> None:
        """End every open event stream (the server is stopping; called in its loop)."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.offer(Subscription.CLOSE)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.tick_s)

    # --- what pages read ---------------------------------------------------------------------------

    def snapshot(self, timeout: float = 10.0) -> tuple[str, list[dict[str, Any]], list[str]]:
        """(the id of the last batch, every row in the overview's order, problems reading stores or
        playbooks) as they stand; waits up to ``timeout`` for the first reading of every store, then says
        it is still reading (the rest comes as events)."""
        ready = self._ready.wait(timeout)
        with self._lock:
            rows = sorted(self._rows.values(), key=lambda r: (r["order"], r["env"]))
            seq = self._seq
        problems = [] if ready else ["still reading the state stores: the rest of the rows come as they are read"]
        problems += [f"{p.name}: {p.problem}" for p in self.projects if p.problem]
        problems += [s.problem for s in self.stores if s.problem]
        return f"{self.boot}-{seq}", rows, problems

    def row(self, key: str) -> dict[str, Any] | None:
        self._ready.wait(10.0)
        with self._lock:
            return self._rows.get(key)

    def project(self, name: str) -> tuple[Project, Playbook | None] | None:
        found = next((p for p in self.projects if p.name == name), None)
        return (found.project, found.playbook) if found else None

    def subscribe(self, loop: asyncio.AbstractEventLoop, key: str | None) -> Subscription:
        """A queue of every batch from now on (``key``: an environment page's; None: the overview's)."""
        sub = Subscription(loop, key)
        with self._lock:
            self._subs.add(sub)
        if key is not None:
            self._flag_due.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.discard(sub)
            if sub.key is not None and not any(s.key == sub.key for s in self._subs):
                self._flags.pop(sub.key, None)

    def replay(self, last_id: str | None) -> list[Batch] | None:
        """The batches after ``last_id`` (``BOOT-SEQ``; None or empty: none needed), or None when they
        are no longer all kept (or the id is another process's): the client must load again."""
        if not last_id:
            return []
        boot, _, seq = last_id.partition("-")
        if boot != self.boot or not seq.isdigit():
            return None
        after = int(seq)
        with self._lock:
            if after > self._seq:
                return None
            kept = [b for b in self._history if b.seq > after]
            oldest = self._history[0].seq if self._history else self._seq + 1
        return kept if after >= oldest - 1 else None

    # --- following the stores ----------------------------------------------------------------------

    def tick(self) -> Batch | None:
        """Ask every store what changed and publish it as one batch (None: nothing changed)."""
        rows: dict[str, dict[str, Any] | None] = {}
        envs: dict[str, dict[str, Any]] = defaultdict(dict)
        self.ticks += 1
        for store in self.stores:
            try:
                self._follow(store, rows, envs)
                store.problem = None
            except Exception as exc:  # noqa: BLE001 - a store that cannot be read is said, and asked again
                said = store.projects[0].project.redactor.text(f"{type(exc).__name__}: {exc}")
                store.problem = f"cannot read the state ({said})"
                store.close()
        batch = self.publish(rows, dict(envs)) if rows or envs else None
        self._ready.set()
        return batch

    def publish(self, rows: dict[str, dict[str, Any] | None], envs: dict[str, dict[str, Any]]) -> Batch:
        """Number a batch, keep it, and offer it to every subscriber."""
        with self._lock:
            self._seq += 1
            batch = Batch(self._seq, self.clock.time(), rows, envs)
            self._history.append(batch)
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, batch)
            except RuntimeError:  # its loop is closed: the server stopped
                self.unsubscribe(sub)
        return batch

    def _reload_playbooks(self, store: _Store) -> set[str]:
        """Reload the playbooks whose file changed; the names of the projects whose rows must be rebuilt."""
        changed = set()
        for p in store.projects:
            try:
                mtime = os.stat(p.project.playbook_path).st_mtime_ns
            except OSError as exc:
                mtime, p.problem = None, f"cannot read the playbook {p.project.playbook_path} ({exc.strerror})"
            if mtime is not None and mtime != p.mtime:
                try:
                    p.playbook, p.problem = p.project.playbook(), None
                    p.names = [env for phase in p.playbook.phases for env in phase.environments]
                except RolloutError as exc:  # keep showing what the last good playbook said
                    p.problem = f"the playbook does not load ({p.project.redactor.text(str(exc))})"
                p.environments.clear()
                changed.add(p.name)
            p.mtime = mtime
        return changed

    def _follow(self, store: _Store, rows: dict[str, Any], envs: dict[str, dict[str, Any]]) -> None:
        reloaded = self._reload_playbooks(store)
        state = store.open()
        fingerprint = state.fingerprint()
        self.reads += 1
        touched: set[str] = set()
        if store.fingerprint is None:  # first read, or after a broken connection: read everything once
            store.audit_id, store.verdict_id = int(fingerprint[0]), int(fingerprint[1])
            store.envs = {r.name: r for r in state.all()}
            store.last = state.last_verdicts()
            store.marks = defaultdict(dict)
            for (env, action), entry in state.last_actions(MARKS).items():
                store.marks[env][action] = entry
            store.controls = state.controls()
            store.drivers = {env: driver(state, env) for env in candidates(state)}
            store.drivers_at = self.clock.monotonic()
            self.reads += 5 + len(store.drivers)
            touched = set(store.envs) | {env for p in store.projects for env in p.envs()}
        elif fingerprint != store.fingerprint:
            touched |= self._news(store, state, fingerprint, envs)
        if self.clock.monotonic() - store.drivers_at >= DRIVERS_EVERY_S:
            touched |= self._drivers(store, state)
        store.fingerprint = fingerprint
        stale: set[str] = set()
        for p in store.projects:
            if p.name in reloaded:
                with self._lock:
                    stale |= {key for key in self._rows if key.startswith(p.name + "/")}
                touched |= set(p.envs()) | set(store.envs)
        seen = self._rebuild(store, touched, rows, envs)
        for key in stale - seen:  # a phase the playbook no longer has, in an environment nothing recorded
            with self._lock:
                self._rows.pop(key, None)
            rows[key] = None

    def _news(
        self, store: _Store, state: StateRecords, fingerprint: tuple[Any, ...], envs: dict[str, dict[str, Any]]
    ) -> set[str]:
        """What is new since the last fingerprint: the environments it touched (and, per environment key,
        the page's new verdicts and audit lines in ``envs``)."""
        touched: set[str] = set()
        hands = False
        before = store.fingerprint or ()
        while int(fingerprint[0]) > store.audit_id:
            entries = state.audit_since(store.audit_id, 2000)
            self.reads += 1
            if not entries:
                break
            for entry in entries:
                env = entry["environment"]
                touched.add(env)
                hands = hands or entry["action"] in HANDS
                if entry["action"] in MARKS:
                    store.marks[env][entry["action"]] = entry
                for _, key in store.keys_of(env):
                    envs.setdefault(key, {}).setdefault("audit", []).append(audit_line(entry))
            store.audit_id = int(entries[-1]["id"])
        while int(fingerprint[1]) > store.verdict_id:
            verdicts = state.verdicts_since(store.verdict_id, 2000)
            self.reads += 1
            if not verdicts:
                break
            for verdict in verdicts:
                env = verdict["environment"]
                touched.add(env)
                store.last[env] = verdict
                for _, key in store.keys_of(env):
                    envs.setdefault(key, {}).setdefault("verdicts", []).append(verdict_line(verdict))
            store.verdict_id = int(verdicts[-1]["id"])
        if fingerprint[2:4] != before[2:4]:
            fresh = {r.name: r for r in state.all()}
            self.reads += 1
            touched |= {n for n in fresh.keys() | store.envs.keys() if fresh.get(n) != store.envs.get(n)}
            store.envs = fresh
        else:  # an update at the same engine time leaves the sums alone: read again what was just active
            for env in touched:
                found = state.get(env)
                self.reads += 1
                if found.updated_at or env in store.envs:
                    store.envs[env] = found
        if fingerprint[4:6] != before[4:6] or hands:
            controls = state.controls()
            self.reads += 1
            touched |= {n for n in controls.keys() | store.controls.keys() if controls.get(n) != store.controls.get(n)}
            store.controls = controls
        if fingerprint[6:8] != before[6:8]:
            touched |= self._drivers(store, state)
        return touched

    def _drivers(self, store: _Store, state: StateRecords) -> set[str]:
        """Ask again who drives each environment someone may drive; the environments whose driver changed."""
        asked = set(candidates(state)) | set(store.drivers)
        fresh = {env: driver(state, env) for env in asked}
        self.reads += 1 + len(asked)
        store.drivers_at = self.clock.monotonic()
        changed = {env for env in asked if fresh[env] != store.drivers.get(env, NOBODY)}
        store.drivers = {env: d for env, d in fresh.items() if d != NOBODY}
        return changed

    def _status(self, store: _Store, p: _Project, row: EnvState) -> str:
        flag_on, turns_on = row.flag, False
        if row.status == COMPLETED and row.flag is False and p.playbook is not None:
            phase = p.playbook.phase_for(row.name)
            if row.name not in p.environments:
                try:
                    p.environments[row.name] = load_environment(row.name, p.project.environments_dir)
                except RolloutError:
                    p.environments[row.name] = None
            env = p.environments[row.name]
            turns_on = bool(phase and env and flag_on_steps(phase, env, p.playbook.flag.variable))
        assert store.state is not None
        return shown_status(store.state, row, flag_on, turns_on)

    def _rebuild(
        self, store: _Store, touched: set[str], rows: dict[str, Any], envs: dict[str, dict[str, Any]]
    ) -> set[str]:
        """Build the rows of the ``touched`` environments again; put what changed in ``rows`` and ``envs``.
        Returns the keys it built."""
        seen: set[str] = set()
        for env in sorted(touched):
            record = store.envs.get(env) or EnvState(env, "idle", None, 0, 0, False, None, None, None, None, None, 0.0)
            for p, key in store.keys_of(env):
                seen.add(key)
                if env not in store.envs and env not in p.envs():
                    new = None  # neither recorded nor in the playbook (any more)
                else:
                    phases = p.envs()
                    order = (p.index, phases.index(env) if env in phases else len(phases))
                    new = overview_row(
                        key,
                        p.name,
                        order,
                        p.playbook,
                        record,
                        self._status(store, p, record),
                        store.last.get(env),
                        store.marks.get(env, {}),
                        store.controls.get(env, Control(False, None)).paused,
                        store.drivers.get(env, NOBODY),
                    )
                with self._lock:
                    old = self._rows.get(key)
                    if new is None:
                        self._rows.pop(key, None)
                    else:
                        self._rows[key] = new
                if new is None:
                    if old is not None:
                        rows[key] = None
                    continue
                diff = row_diff(old, new)
                if diff:
                    rows[key] = diff
                if any(f in diff for f in ("flag", "percent", "status")):
                    self._read_flag_again(key)
                if p.playbook is not None and (old is None or any(f in diff for f in STEP_FIELDS)):
                    envs.setdefault(key, {})["steps"] = steps_timeline(p.playbook, p.playbook.phase_for(env), record)
        return seen

    # --- the flag of an open environment page, as its service reports it ---------------------------

    def _read_flag_again(self, key: str) -> None:
        """A flag write was recorded for ``key``: read what its service applied now, not in a few seconds."""
        with self._lock:
            if key in self._flags:
                self._flags[key] = (-FLAG_EVERY_S, self._flags[key][1])
                self._flag_due.set()

    def _probe_flags(self) -> None:
        states: dict[str, StateRecords] = {}
        try:
            while not self._stop.is_set():
                self._flag_due.wait(1.0)
                self._flag_due.clear()
                with self._lock:
                    keys = {s.key for s in self._subs if s.key is not None}
                due = [
                    k
                    for k in keys
                    if k not in self._flags or self.clock.monotonic() - self._flags[k][0] >= FLAG_EVERY_S
                ]
                for key in due:
                    found = self.flag_of(key, states)
                    with self._lock:
                        before = self._flags.get(key, (0.0, None))[1]
                        if key in {s.key for s in self._subs}:
                            self._flags[key] = (self.clock.monotonic(), found)
                    if found is not None and found != before:
                        self.publish({}, {key: {"flag": found}})
        finally:
            for state in states.values():
                state.close()

    def flag_of(self, key: str, states: dict[str, StateRecords] | None = None) -> dict[str, Any] | None:
        """The flag of ``key``'s environment as its service reports it (:func:`flag_view`)."""
        name, _, env = key.partition("/")
        p = next((x for x in self.projects if x.name == name), None)
        if p is None:
            return None
        opened: StateRecords | None = None
        try:
            state = (states or {}).get(name)
            if state is None:
                state = opened = p.project.state(read_only=True)
                if states is not None:
                    states[name], opened = state, None
            view = flag_view(p.project, p.playbook, state, state.get(env))
        except Exception:  # noqa: BLE001 - a flag that cannot be read now is read again later
            if states is not None and name in states:
                states.pop(name).close()
            return None
        finally:
            if opened is not None:
                opened.close()
        return {
            "flag": {True: "on", False: "off", None: "?"}[view.flag],
            "percent": view.percent,
            "source": view.source or "as rollout recorded it",
            "reported_by": view.reported_by,
            "status": view.status,
        }
