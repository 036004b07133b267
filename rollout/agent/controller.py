"""The always-on agent: it holds leases on the environments that need it and looks at each when due.

One thread keeps ownership (renews leases every third of their time to live, takes environments
that need an agent, gives some up to even the spread, notices a lost lease) and the schedule (a
heap of due looks); a pool of worker threads makes the looks, one environment at a time each, so
a slow or hanging provider holds one worker and delays no other environment's evaluation or kill.
SIGTERM (:meth:`Agent.stop`): no new looks, the ones under way finish (up to ``stop_grace``),
where each environment stands is recorded, and every lease is given up so another agent takes
over within a second.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rollout.agent import ownership, work
from rollout.agent.config import AgentConfig
from rollout.agent.log import AgentLog
from rollout.engine import handoff, leases
from rollout.engine.driver import terminal
from rollout.engine.project import Project
from rollout.engine.state import LeaseLost, StateRecords, fenced
from rollout.playbook.model import GateStep, Playbook, RampStep
from rollout.util.clock import Clock, SystemClock
from rollout.util.errors import RolloutError


@dataclass
class Served:
    """One project the agent serves, with its state store (shared by projects naming the same one)."""

    project: Project
    playbook: Playbook
    state: StateRecords

    @property
    def environments(self) -> list[str]:
        return [e for p in self.playbook.phases for e in p.environments]

    @property
    def key(self) -> str:
        return str(self.project.state_url or self.project.state_path)


@dataclass
class Figures:
    """What the agent measures of itself, for ``/metrics`` and ``/healthz``."""

    looks: int = 0
    look_errors: int = 0
    takeovers: int = 0
    leases_lost: int = 0
    #: seconds each look started after it was due (the last 10,000)
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    last_round: float = 0.0


class Agent:
    """See the module docstring."""

    def __init__(self, config: AgentConfig, log: AgentLog, clock: Clock | None = None, url: str | None = None) -> None:
        self.config, self.log, self.clock, self.url = config, log, clock or SystemClock(), url
        self.id = config.name
        self.served: list[Served] = []
        self.works: dict[tuple[str, str], work.Work] = {}
        self.figures = Figures()
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = itertools.count()
        self._running: dict[tuple[str, str], Future[Any]] = {}
        self._shed: dict[tuple[str, str], float] = {}
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._pool = ThreadPoolExecutor(config.workers, thread_name_prefix="rollout-agent")
        self._stores: dict[str, StateRecords] = {}
        #: leases the renewal thread found lost, for the main thread to let go
        self._lost: queue.Queue[tuple[str, leases.Lease]] = queue.Queue()
        #: set once every lease is given up at the end: the renewal thread renews until then
        self._released = threading.Event()
        self._renewer = threading.Thread(target=self._renewing, name="rollout-agent-leases", daemon=True)

    # --- start and stop ------------------------------------------------------------------------

    def open(self) -> None:
        """Load every project (a broken playbook stops the start with its line), check that no two
        projects sharing a state store name the same environment, and register."""
        seen: dict[tuple[str, str], str] = {}
        for entry in self.config.projects:
            project = self.config.project(entry)
            playbook = project.playbook()
            key = str(project.state_url or project.state_path)
            if key not in self._stores:
                self._stores[key] = project.state()
            served = Served(project, playbook, self._stores[key])
            for env in served.environments:
                if (key, env) in seen:
                    raise RolloutError(
                        f"{entry.playbook}: environment {env!r} is also in {seen[(key, env)]}, with the same state "
                        "store; give one of the projects its own state"
                    )
                seen[(key, env)] = str(entry.playbook)
            self.served.append(served)
        for store in self._stores.values():
            handoff.register(store, self.id, self.url, self._serves(store), self.config.lease_ttl, self.clock.time())
        envs = sum(len(s.environments) for s in self.served)
        self.log.event("started", f"agent {self.id} serves {envs} environment(s) of {len(self.served)} project(s)")

    def _serves(self, store: StateRecords) -> list[str]:
        return [e for s in self.served if s.state is store for e in s.environments]

    def stop(self) -> None:
        """Ask the agent to stop (SIGTERM): see the module docstring."""
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """Serve until :meth:`stop`. Ownership rounds keep real time (a lease is renewed in real
        time, whatever clock the looks are due by); looks are due by the agent's clock."""
        round_every = min(1.0, self.config.lease_ttl / 5)
        next_round = 0.0
        self._renewer.start()
        try:
            while not self._stopping.is_set():
                if time.monotonic() >= next_round:
                    self._round()
                    next_round = time.monotonic() + round_every
                self._collect()
                self._dispatch()
                due = self._heap[0][0] - self.clock.time() if self._heap else float("inf")
                self._wake.wait(max(0.0, min(next_round - time.monotonic(), due, 0.5)))
                self._wake.clear()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        deadline = time.monotonic() + self.config.stop_grace
        for future in list(self._running.values()):
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - a look that failed or outlived the grace is given up below
                pass
        self._collect()
        for key in list(self.works):
            self._let_go(key, "the agent stopped (SIGTERM)", release=True, say=True)
        self._released.set()
        if self._renewer.is_alive():
            self._renewer.join(10)
        for store in self._stores.values():
            try:
                handoff.unregister(store, self.id)
            except Exception:  # noqa: BLE001 - the lease is what matters, and it is given up
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.log.event("stopped", f"agent {self.id} stopped; every lease given up")
        for store in self._stores.values():
            store.close()

    # --- ownership -----------------------------------------------------------------------------

    def _round(self) -> None:
        """Notice what was lost, take what needs an agent, give up the excess."""
        now = self.clock.time()
        self.figures.last_round = time.monotonic()
        self._take_in_losses()
        for key, store in self._stores.items():
            try:
                self._claim(key, store, now)
            except RolloutError as exc:
                self.log.event("error", f"state store {store.path}: {exc}")
            except Exception as exc:  # noqa: BLE001 - a store that fails this round is tried again next round
                self.log.event("error", f"state store {store.path}: {type(exc).__name__}: {exc}")

    def _renewing(self) -> None:
        """The renewal thread: every third of the lease's time to live, a heartbeat and one statement
        renewing every lease held, whatever the main thread is busy with; the leases found lost go to
        the main thread, which lets them go."""
        while not self._released.is_set():
            now = self.clock.time()
            for key, store in self._stores.items():
                held = [w.lease for w in list(self.works.values()) if w.key[0] == key and not w.over]
                try:
                    handoff.heartbeat(store, self.id, now)
                    for lease in leases.renew_all(store, self.id, held, now):
                        self._lost.put((key, lease))
                except Exception as exc:  # noqa: BLE001 - a store that fails now is tried again in a moment
                    self.log.event("error", f"renewing the leases in {store.path}: {type(exc).__name__}: {exc}")
            self._wake.set()
            self._released.wait(self.config.lease_ttl / 3)

    def _take_in_losses(self) -> None:
        while not self._lost.empty():
            key, lease = self._lost.get()
            w = self.works.get((key, lease.environment))
            if w is None or w.lease is not lease:
                continue
            self.figures.leases_lost += 1
            holder = leases.last_lease(self._stores[key], lease.environment)
            self._let_go(
                (key, lease.environment),
                f"lost the lease on {lease.environment} (token {lease.token}) to "
                f"{holder.owner if holder else 'nobody'}: back to standby for it",
                release=False,
                say=False,
            )

    def _claim(self, key: str, store: StateRecords, now: float) -> None:
        mine = {e for (k, e) in self.works if k == key}
        needing: dict[str, tuple[Served, str]] = {}
        # a request taken by an agent that stopped before the run began (armed, or waiting for its wave)
        # still needs one: the next agent adopts it
        pending = {r.environment for r in [*handoff.pending(store), *handoff.unfinished(store)]}
        serving = [s for s in self.served if s.state is store]
        rows = store.rows([e for s in serving for e in s.environments])
        for served in serving:
            for phase in served.playbook.phases:
                for env in phase.environments:  # a phase in waves: each region is an environment of its own
                    row = rows[env]
                    observing = (
                        row.phase == phase.name
                        and row.step_index < len(phase.steps)
                        and isinstance(phase.steps[row.step_index], (RampStep, GateStep))
                    )
                    requested = env in pending
                    need = ownership.needs(row, requested, phase.bake, observing, False, now)
                    if need is not None and terminal(store, env) is not None:
                        need = None  # a person's advance drives it: no agent writes beside it
                    if need is not None:
                        needing[env] = (served, need)
        for env in mine - set(needing):
            w = self.works[(key, env)]
            if (key, env) not in self._running and w.mode != ownership.DRIVE:
                self._let_go((key, env), f"{env} needs no agent any more", release=True, say=False)
        fresh = leases.leases(store, now)
        others = {e for e, lease in fresh.items() if lease.owner != self.id}
        expired = {
            e
            for e in needing
            if e not in fresh and (last := leases.last_lease(store, e)) is not None and last.expires_at
        }
        live = len([a for a in handoff.live_agents(store, now) if a.ttl and a.heartbeat_at >= now - 1.5 * a.ttl])
        for shed_key, since in list(self._shed.items()):
            if now - since > 2 * self.config.lease_ttl:
                del self._shed[shed_key]
        decided = ownership.plan(
            self.id,
            needing,
            mine,
            others,
            expired,
            max(1, live),
            busy={e for (k, e) in self._running if k == key},
            recently_shed={e for (k, e) in self._shed if k == key},
        )
        for env in decided.shed:
            self._shed[(key, env)] = now
            self._let_go((key, env), f"gave {env} up to even the spread over {live} agents", release=True, say=True)
        taken = leases.claim_many(store, decided.claim, self.id, self.config.lease_ttl, now, time.monotonic)
        for env, (lease, replaced) in taken.items():
            served, need = needing[env]
            self.figures.takeovers += 1
            lease.renew_now = lambda lease=lease, store=store: leases.renew(store, lease, self.clock.time())
            w = work.Work(served.project, env, need, lease, replaced)
            w.due = now
            self.works[(key, env)] = w
            self._schedule((key, env), now)

    def _let_go(self, key: tuple[str, str], why: str, *, release: bool, say: bool) -> None:
        """Stop holding ``key``: say where it stands (under the lease, while it is still ours), give
        the lease up (or not: a lost one is not ours), close its context."""
        w = self.works.get(key)
        if w is None:
            return
        if key in self._running:  # its look is under way with its context: let go once it ends
            w.over = w.over or why
            w.let_go = (why, release, say)
            return
        del self.works[key]
        store = self._stores[key[0]]
        if say and w.lease.held:
            try:
                with fenced(w.lease):
                    row = store.get(w.environment)
                    store.audit(
                        w.environment,
                        "agent_released",
                        self.clock.time(),
                        why=why,
                        token=w.lease.token,
                        status=row.status,
                        step_index=row.step_index,
                        percent=row.percent if row.flag else None,
                    )
            except (LeaseLost, RolloutError) as exc:
                self.log.event("error", f"could not record the release of {w.environment}: {exc}", w.environment)
        if release:
            try:
                leases.release(store, w.lease)
            except Exception as exc:  # noqa: BLE001 - a lease not given up runs out by itself
                self.log.event("error", f"could not give up the lease on {w.environment}: {exc}", w.environment)
        self.log.event("released" if release else "lost", why, w.environment, w.project.redactor)
        work.close(w)

    # --- the schedule --------------------------------------------------------------------------

    def _schedule(self, key: tuple[str, str], at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), key))
        self._wake.set()

    def _dispatch(self) -> None:
        now = self.clock.time()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            w = self.works.get(key)
            if w is None or key in self._running or w.due != due:
                continue
            self.figures.lateness.append(max(0.0, now - due))
            self._running[key] = self._pool.submit(self._look, w)

    def _look(self, w: work.Work) -> float | None:
        store = self._stores[w.key[0]]
        try:
            return work.look(w, store, self.clock, self.log)
        finally:
            self._wake.set()

    def _collect(self) -> None:
        """Take in the looks that ended: schedule the next, or let the work go."""
        for key, future in list(self._running.items()):
            if not future.done():
                continue
            del self._running[key]
            w = self.works.get(key)
            self.figures.looks += 1
            if w is not None and w.let_go is not None:
                why, release, say = w.let_go
                self._let_go(key, why, release=release, say=say)
                continue
            try:
                next_at = future.result()
            except LeaseLost as exc:
                self.figures.leases_lost += 1
                if w is not None:
                    self._let_go(key, str(exc), release=False, say=False)
                continue
            except Exception as exc:  # noqa: BLE001 - one environment's trouble never stops the others
                self.figures.look_errors += 1
                what = str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
                if w is not None:
                    self.log.event(
                        "error", f"look at {w.environment} failed: {what}", w.environment, w.project.redactor
                    )
                    w.due = self.clock.time() + min(30.0, self.config.lease_ttl)
                    self._schedule(key, w.due)
                continue
            if w is None:
                continue
            if next_at is None:
                self._let_go(key, w.over or "done", release=True, say=False)
                continue
            w.due = next_at
            self._schedule(key, next_at)

    # --- what others read ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: alive while its ownership rounds keep coming."""
        age = time.monotonic() - self.figures.last_round if self.figures.last_round else None
        ok = age is not None and age < 3 * max(1.0, self.config.lease_ttl)
        modes: dict[str, int] = {}
        for w in self.works.values():
            modes[w.mode] = modes.get(w.mode, 0) + 1
        late = sorted(self.figures.lateness)
        lateness = (
            {
                "n": len(late),
                "p50": late[len(late) // 2],
                "p99": late[max(0, int(len(late) * 0.99) - 1)],
                "max": late[-1],
            }
            if late
            else None
        )
        return {
            "status": "ok" if ok else "stuck",
            "lateness_s": lateness,
            "agent": self.id,
            "environments": len(self.works),
            "by_mode": modes,
            "looks_under_way": len(self._running),
            "last_round_age_s": None if age is None else round(age, 3),
        }
