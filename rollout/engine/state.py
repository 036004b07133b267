"""Durable engine state in SQLite (default ``.rollout/state.db``).

Per environment: the status, the phase, the step reached, the ramp position, the flag and the
percentage, the commit. Every gate verdict with its figures. An append-only audit log (SQLite
triggers refuse UPDATE and DELETE on it). And the writer lock: one ``advance`` per environment at a
time, held by a pid; a lock whose process is gone is stale and is taken over.
"""

from __future__ import annotations

import contextlib
import contextvars
import getpass
import json
import os
import socket
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rollout.util.connections import ThreadConnections
from rollout.util.errors import RolloutError, StateError
from rollout.util.numbers import finite
from rollout.util.outcomes import Status
from rollout.util.redact import Redactor
from rollout.util.sqlite import immediate

SCHEMA = """
CREATE TABLE IF NOT EXISTS environments (
    name            TEXT PRIMARY KEY,
    status          TEXT NOT NULL DEFAULT 'idle',
    phase           TEXT,
    step_index      INTEGER NOT NULL DEFAULT 0,
    ramp_index      INTEGER NOT NULL DEFAULT 0,
    ramp_applied    INTEGER NOT NULL DEFAULT 0,
    observe_started REAL,
    percent         INTEGER,
    flag            INTEGER,
    commit_sha      TEXT,
    reason          TEXT,
    updated_at      REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS verdicts (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    environment TEXT NOT NULL,
    phase       TEXT,
    step        TEXT,
    percent     INTEGER,
    verdict     TEXT NOT NULL,
    summary     TEXT NOT NULL,
    metrics     TEXT NOT NULL,
    commit_sha  TEXT,
    duration_s  REAL,
    readings    TEXT
);
CREATE INDEX IF NOT EXISTS verdicts_env ON verdicts(environment, id);
CREATE TABLE IF NOT EXISTS audit (
    id          INTEGER PRIMARY KEY,
    ts          REAL NOT NULL,
    environment TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_env ON audit(environment, id);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS locks (
    environment TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    host        TEXT NOT NULL,
    acquired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS controls (
    environment TEXT PRIMARY KEY,
    paused      INTEGER NOT NULL DEFAULT 0,
    promote     TEXT,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    environment TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    token       INTEGER NOT NULL,
    expires_at  REAL NOT NULL,
    acquired_at REAL NOT NULL,
    renewed_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    url          TEXT,
    serves       TEXT NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    ttl          REAL NOT NULL,
    stopping     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS run_requests (
    id           INTEGER PRIMARY KEY,
    environment  TEXT NOT NULL,
    options      TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at REAL NOT NULL,
    taken_by     TEXT,
    taken_at     REAL,
    finished_at  REAL,
    outcome      TEXT
);
CREATE INDEX IF NOT EXISTS run_requests_env ON run_requests(environment, id);
"""

#: columns added after the first release: (table, column, SQLite type); a state file from before gets them
ADDED_COLUMNS = (
    ("verdicts", "duration_s", "REAL"),
    ("verdicts", "readings", "TEXT"),
    ("environments", "run_id", "TEXT"),
    ("environments", "driver", "TEXT"),
    ("environments", "completed_at", "REAL"),
    ("controls", "run_id", "TEXT"),
)

#: status values of an environment, the members of :class:`rollout.util.outcomes.Status` under their older names
IDLE, RUNNING, HELD, AWAITING_APPROVAL, ROLLED_BACK, COMPLETED, INTERRUPTED = (
    Status.IDLE,
    Status.RUNNING,
    Status.HELD,
    Status.AWAITING_APPROVAL,
    Status.ROLLED_BACK,
    Status.COMPLETED,
    Status.INTERRUPTED,
)

#: :attr:`EnvState.driver` of a run handed to the always-on agents
AGENT = "agent"


def actor() -> str:
    """Who is acting: ``$ROLLOUT_ACTOR``, else ``user@host``."""
    if os.environ.get("ROLLOUT_ACTOR"):
        return os.environ["ROLLOUT_ACTOR"]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` (on this host) still there?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseLost(RolloutError):
    """An agent's lease on an environment ran out or was taken over: it writes nothing more there
    (no state change, no flag write) and goes back to standby for it."""

    exit_code = 1


class Fence(Protocol):
    """What an agent's lease gives the writes made on its behalf: the environment, the owner and
    its fencing token (a number that only grows; every write to the record checks it in its own
    transaction), and a local check that the lease is still known to be held (renewed within its
    time to live, by this process's monotonic clock), made right before each flag write."""

    environment: str
    owner: str
    token: int

    def check_local(self) -> None:
        """Raise :class:`LeaseLost` if the lease may have run out (and cannot be renewed now)."""


def check_before_flag_write(environment: str) -> None:
    """Under an agent's lease on ``environment``: refuse (:class:`LeaseLost`) a flag write the lease
    may no longer cover. Called after the write's intent is committed (checked against the token)
    and right before the write itself, so an agent frozen in between writes nothing when it wakes."""
    fence = _FENCE.get()
    if fence is not None and fence.environment == environment:
        fence.check_local()


_FENCE: contextvars.ContextVar[Fence | None] = contextvars.ContextVar("rollout_fence", default=None)


@contextlib.contextmanager
def fenced(fence: Fence | None) -> Iterator[None]:
    """Every write to ``fence.environment``'s record made inside (in this thread) is checked against
    the fence in its own transaction: refused with :class:`LeaseLost` when a newer owner exists."""
    reset = _FENCE.set(fence)
    try:
        yield
    finally:
        _FENCE.reset(reset)


@dataclass(frozen=True)
class EnvState:
    name: str
    status: str
    phase: str | None
    step_index: int
    ramp_index: int
    ramp_applied: bool
    observe_started: float | None
    percent: int | None
    flag: bool | None
    commit_sha: str | None
    reason: str | None
    updated_at: float
    #: the run this state belongs to: set when an advance starts a phase or starts again after a
    #: rollback; a person's request is tied to it, so no later run applies it
    run_id: str | None = None
    #: ``agent`` when the run was handed to the always-on agents (they drive it to its end, and
    #: take it over from each other); None: a terminal's ``advance`` drives it
    driver: str | None = None
    #: when the phase completed (an agent bakes it from then on)
    completed_at: float | None = None


#: a store given no redactor still masks phones
_PHONES_ONLY = Redactor()


@dataclass(frozen=True)
class Control:
    """A person's hand on an environment's running step (``rollout pause/continue/promote``)."""

    paused: bool
    #: ``step@WHERE`` (accept the step now) or ``full@WHERE`` (to 100 % now), WHERE the step it was asked at
    #: (:func:`step_at`); None: nothing pending
    promote: str | None
    #: the run the requests were made in (:attr:`EnvState.run_id`): another run never applies them
    run_id: str | None = None

    def belongs_to(self, row: EnvState) -> bool:
        """Were these requests made in ``row``'s run?"""
        return self.run_id is not None and self.run_id == row.run_id

    @property
    def pending(self) -> bool:
        return self.paused or self.promote is not None

    @property
    def promote_kind(self) -> str | None:
        return self.promote.split("@", 1)[0] if self.promote else None

    @property
    def promote_at(self) -> str | None:
        return self.promote.split("@", 1)[1] if self.promote and "@" in self.promote else None


def step_at(row: EnvState) -> str:
    """Where an environment's run stands (phase, step, ramp percentage), to tie a person's request to it."""
    return f"{row.phase}:{row.step_index}:{row.ramp_index}"


class StateRecords:
    """The record both state stores keep with the same SQL: environments, the audit log and
    verdicts. A store supplies ``_db`` and the few things its engine does differently: placeholders
    (:meth:`_sql`), how a boolean and a JSON document are stored (:meth:`_bool`, :meth:`_dump`) and
    read back (:meth:`_load`). The writer lock is each store's own.

    It is also the interface the engine types against: SQLite (:class:`StateStore`) and PostgreSQL
    (:class:`rollout.engine.pgstate.PgStateStore`) alike."""

    _db: Any
    #: where it lives, for messages (a file, or a URL with its password hidden)
    path: Any
    #: a SQLite file that does not exist yet, opened read-only: nothing has run with it
    missing = False

    def close(self) -> None:
        """Close the connection."""
        raise NotImplementedError

    def tx(self) -> contextlib.AbstractContextManager[Any]:
        """One transaction; pass what it yields as ``db=`` to :meth:`update` and :meth:`audit`."""
        raise NotImplementedError

    def acquire(self, environment: str, now: float) -> str | None:
        """Take ``environment``'s writer lock (a dead holder's is taken over: returns a note saying so)."""
        raise NotImplementedError

    def release(self, environment: str) -> None:
        """Give the writer lock back."""
        raise NotImplementedError

    def holder(self, environment: str) -> dict[str, Any] | None:
        """Who holds the writer lock (owner, pid, host), or None."""
        raise NotImplementedError

    #: what every text written passes through: known secrets as ``***``, phones masked (a reason
    #: typed by a person, a backend's error quoting a token, a check's detail)
    redactor: Redactor = _PHONES_ONLY

    @staticmethod
    def _sql(sql: str) -> str:
        return sql

    @staticmethod
    def _bool(value: Any) -> Any:
        return int(bool(value))

    @staticmethod
    def _dump(value: Any, sort_keys: bool) -> Any:
        # JSON has no Infinity or NaN: a figure that holds one is recorded as no figure (None)
        return json.dumps(finite(value), default=str, sort_keys=sort_keys, allow_nan=False)

    @staticmethod
    def _load(value: Any) -> Any:
        return json.loads(value)

    def _run(self, sql: str, params: Any = (), db: Any = None) -> Any:
        return (db or self._db).execute(self._sql(sql), params)

    def execute(self, sql: str, params: Any = (), db: Any = None) -> Any:
        """Run one statement written with ``?`` placeholders (in ``db``'s transaction if given), for
        the engine's own tables kept by other modules (leases, agents, run requests)."""
        return self._run(sql, params, db)

    def server_time(self, now: float) -> float:
        """The time the store's shared records (leases, heartbeats) are kept in: ``now`` (the
        caller's clock) for SQLite, one machine; the database's own clock for PostgreSQL."""
        return now

    #: reads the lease row a fenced write checks (PostgreSQL adds ``FOR UPDATE``: a take-over waits)
    _LEASE_ROW = "SELECT owner, token FROM leases WHERE environment = ?"

    def in_tx(self, db: Any) -> bool:
        """Is ``db`` inside a transaction already?"""
        raise NotImplementedError

    def serialize(self, db: Any, key: str) -> None:
        """Inside ``db``'s transaction, wait until no other transaction serialized on ``key`` is
        open (the lock is held until this one ends): what this one reads then stays as read until
        it commits. SQLite needs nothing: a transaction (``BEGIN IMMEDIATE``) is the only writer."""

    def _write(self, environment: str, db: Any, write: Any) -> Any:
        """Run ``write(db)``; under a :func:`fenced` lease on ``environment``, in a transaction that
        first checks the lease is still this owner's with this token (else :class:`LeaseLost`)."""
        fence = _FENCE.get()
        if fence is None or fence.environment != environment:
            return write(db)
        if db is not None and self.in_tx(db):
            self._check_fence(fence, db)
            return write(db)
        with self.tx() as tx:
            self._check_fence(fence, tx)
            return write(tx)

    def _check_fence(self, fence: Fence, db: Any) -> None:
        row = self._run(self._LEASE_ROW, (fence.environment,), db).fetchone()
        if row is None or row["owner"] != fence.owner or int(row["token"]) != fence.token:
            newer = f"{row['owner']} (token {row['token']})" if row is not None else "nobody"
            raise LeaseLost(
                f"{fence.owner} lost its lease on {fence.environment} (token {fence.token}); it is held by "
                f"{newer} now: nothing more is written"
            )

    # --- environments ----------------------------------------------------------------------------

    def rows(self, names: list[str]) -> dict[str, EnvState]:
        """The state of each of ``names`` in one query (an environment never run reads as idle)."""
        found = {name: self.get_default(name) for name in names}
        if not names:
            return found
        marks = ", ".join("?" for _ in names)
        for row in self._run(f"SELECT * FROM environments WHERE name IN ({marks})", list(names)).fetchall():
            found[row["name"]] = self._env_state(row)
        return found

    @staticmethod
    def get_default(name: str) -> EnvState:
        return EnvState(name, IDLE, None, 0, 0, False, None, None, None, None, None, 0.0)

    @staticmethod
    def _env_state(row: Any) -> EnvState:
        data = dict(row)
        data["ramp_applied"] = bool(data["ramp_applied"])
        data["flag"] = None if data["flag"] is None else bool(data["flag"])
        return EnvState(**data)

    def get(self, name: str) -> EnvState:
        row = self._run("SELECT * FROM environments WHERE name = ?", (name,)).fetchone()
        return self.get_default(name) if row is None else self._env_state(row)

    def all(self) -> list[EnvState]:
        """Every recorded environment, by name (one query)."""
        return [self._env_state(r) for r in self._run("SELECT * FROM environments ORDER BY name")]

    def update(self, name: str, now: float, db: Any = None, **fields: Any) -> None:
        """Set ``fields`` of environment ``name`` (created if new)."""
        for key in ("ramp_applied", "flag"):
            if key in fields and fields[key] is not None:
                fields[key] = self._bool(fields[key])
        if isinstance(fields.get("reason"), str):
            fields["reason"] = self.redactor.text(fields["reason"])

        def write(db: Any) -> None:
            self._run(
                "INSERT INTO environments (name, updated_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                (name, now),
                db,
            )
            if fields:
                assignments = ", ".join(f"{k} = ?" for k in fields)
                self._run(
                    f"UPDATE environments SET {assignments}, updated_at = ? WHERE name = ?",
                    [*fields.values(), now, name],
                    db,
                )

        self._write(name, db, write)

    # --- audit and verdicts ----------------------------------------------------------------------

    def audit(
        self, environment: str, action: str, now: float, who: str | None = None, db: Any = None, **detail: Any
    ) -> None:
        fence = _FENCE.get()
        if fence is not None and fence.environment == environment:
            who = who or fence.owner  # what an agent writes is signed by the agent
        row = (
            now,
            environment,
            self.redactor.text(who or actor()),
            action,
            self._dump(self.redactor.value(detail), True),
        )
        self._write(
            environment,
            db,
            lambda db: self._run(
                "INSERT INTO audit (ts, environment, actor, action, detail) VALUES (?, ?, ?, ?, ?)", row, db
            ),
        )

    def audit_log(self, environment: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        query = "SELECT * FROM audit" + (" WHERE environment = ?" if environment else "") + " ORDER BY id DESC LIMIT ?"
        rows = self._run(query, (environment, limit) if environment else (limit,)).fetchall()
        return [{**dict(r), "detail": self._load(r["detail"])} for r in reversed(rows)]

    def audit_after(self, environment: str, after_id: int) -> list[dict[str, Any]]:
        """``environment``'s audit entries with an id above ``after_id``, oldest first."""
        rows = self._run(
            "SELECT * FROM audit WHERE environment = ? AND id > ? ORDER BY id", (environment, after_id)
        ).fetchall()
        return [{**dict(r), "detail": self._load(r["detail"])} for r in rows]

    def verdicts_after(self, environment: str, after_id: int) -> list[dict[str, Any]]:
        """``environment``'s verdicts with an id above ``after_id``, oldest first."""
        rows = self._run(
            "SELECT * FROM verdicts WHERE environment = ? AND id > ? ORDER BY id", (environment, after_id)
        ).fetchall()
        return [{**dict(r), "metrics": self._load(r["metrics"])} for r in rows]

    def last_ids(self, environment: str) -> tuple[int, int]:
        """The newest audit and verdict ids of ``environment`` (0 when none)."""
        audit = self._run("SELECT COALESCE(MAX(id), 0) AS n FROM audit WHERE environment = ?", (environment,))
        verdicts = self._run("SELECT COALESCE(MAX(id), 0) AS n FROM verdicts WHERE environment = ?", (environment,))
        return int(audit.fetchone()["n"]), int(verdicts.fetchone()["n"])

    def record_verdict(
        self,
        environment: str,
        now: float,
        phase: str | None,
        step: str | None,
        percent: int | None,
        verdict: str,
        summary: str,
        metrics: list[dict[str, Any]],
        commit_sha: str | None = None,
        duration_s: float | None = None,
        readings: dict[str, Any] | None = None,
    ) -> None:
        """One evaluation: its verdict, every metric's result, how long it took (``duration_s``), and
        what each metric's judge read (``readings``, by metric: kept apart from the results, which
        every view reads, for ``rollout backtest``, which alone needs them)."""
        row = (
            now,
            environment,
            phase,
            step,
            percent,
            verdict,
            self.redactor.text(summary),
            self._dump(self.redactor.value(metrics), False),
            commit_sha,
            duration_s,
            None if readings is None else self._dump(self.redactor.value(readings), False),
        )
        self._write(
            environment,
            None,
            lambda db: self._run(
                "INSERT INTO verdicts (ts, environment, phase, step, percent, verdict, summary, metrics, commit_sha, "
                "duration_s, readings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
                db,
            ),
        )

    # --- a person's hand on a running step -------------------------------------------------------

    def control(self, environment: str) -> Control:
        """What a person asked of ``environment``'s running step: paused, and a promotion pending,
        with the run they were asked in."""
        row = self._run("SELECT paused, promote, run_id FROM controls WHERE environment = ?", (environment,)).fetchone()
        return Control(bool(row["paused"]), row["promote"], row["run_id"]) if row else Control(False, None)

    def set_control(self, environment: str, now: float, db: Any = None, **fields: Any) -> None:
        """Set ``paused`` and/or ``promote`` (``step``, ``full`` or None) for ``environment``; never waits
        for an advance's writer lock (as a rollback does not)."""
        if "paused" in fields:
            fields["paused"] = self._bool(fields["paused"])

        def write(db: Any) -> None:
            self._run(
                "INSERT INTO controls (environment, updated_at) VALUES (?, ?) ON CONFLICT (environment) DO NOTHING",
                (environment, now),
                db,
            )
            assignments = ", ".join(f"{k} = ?" for k in fields)
            self._run(
                f"UPDATE controls SET {assignments}, updated_at = ? WHERE environment = ?",
                [*fields.values(), now, environment],
                db,
            )

        self._write(environment, db, write)

    def tallies(self, environment: str) -> dict[str, Any]:
        """Counts over the whole record, for the dashboard's ``/metrics``: verdicts by verdict,
        flag-offs by cause (``analysis``: a gate or watch; ``operator``: a person), failed flag-offs,
        and the evaluations' total duration and number."""
        verdicts = {
            r["verdict"]: int(r["n"])
            for r in self._run(
                "SELECT verdict, COUNT(*) AS n FROM verdicts WHERE environment = ? GROUP BY verdict", (environment,)
            ).fetchall()
        }
        timed = self._run(
            "SELECT COUNT(duration_s) AS n, COALESCE(SUM(duration_s), 0) AS total FROM verdicts WHERE environment = ?",
            (environment,),
        ).fetchone()
        offs: dict[str, int] = {"analysis": 0, "operator": 0}
        failed = 0
        for row in self._run(
            "SELECT action, detail FROM audit WHERE environment = ? AND action IN ('flag_off', 'flag_off_failed')",
            (environment,),
        ).fetchall():
            if row["action"] == "flag_off_failed":
                failed += 1
            else:
                offs["analysis" if self._load(row["detail"]).get("automatic") else "operator"] += 1
        return {
            "verdicts": verdicts,
            "flag_offs": offs,
            "flag_off_failures": failed,
            "evaluations_timed": int(timed["n"]),
            "evaluation_seconds": float(timed["total"]),
        }

    def verdicts(self, environment: str, limit: int = 1000, readings: bool = False) -> list[dict[str, Any]]:
        """The newest ``limit`` evaluations, oldest first; with ``readings``, each metric carries what
        its judge read (``reading``), where the record kept it."""
        columns = "id, ts, environment, phase, step, percent, verdict, summary, metrics, commit_sha, duration_s"
        rows = self._run(
            f"SELECT {columns}{', readings' if readings else ''} FROM verdicts WHERE environment = ? "
            "ORDER BY id DESC LIMIT ?",
            (environment, limit),
        ).fetchall()
        found = []
        for r in reversed(rows):
            data = dict(r)
            kept = data.pop("readings", None)
            metrics = self._load(data["metrics"])
            if readings and kept is not None:
                read = self._load(kept)
                metrics = [{**m, "reading": read[m["metric"]]} if m.get("metric") in read else m for m in metrics]
            found.append({**data, "metrics": metrics})
        return found

    # --- what a watcher (the dashboard) reads to follow the record cheaply -------------------------

    def fingerprint(self) -> tuple[Any, ...]:
        """Something that changes whenever anything recorded changes, in one cheap query: the newest
        audit and verdict ids, the count and sum of the environments', controls' and locks' times, and
        how many are paused. (Two writes at one engine time can leave the sums alone: a reader also
        reads again the environments the new audit entries and verdicts name.)"""
        row = self._run(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM audit) AS audit, "
            "(SELECT COALESCE(MAX(id), 0) FROM verdicts) AS verdicts, "
            "(SELECT COUNT(*) FROM environments) AS envs, "
            "(SELECT COALESCE(SUM(updated_at), 0) FROM environments) AS env_times, "
            "(SELECT COALESCE(SUM(updated_at), 0) FROM controls) AS controls, "
            "(SELECT COUNT(*) FROM controls WHERE paused = ?) AS paused, "
            "(SELECT COUNT(*) FROM locks) AS locks, "
            "(SELECT COALESCE(SUM(acquired_at + pid), 0) FROM locks) AS lock_times",
            (self._bool(True),),
        ).fetchone()
        names = ("audit", "verdicts", "envs", "env_times", "controls", "paused", "locks", "lock_times")
        return tuple(row[k] for k in names)

    def audit_since(self, after_id: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """Audit entries of every environment with an id above ``after_id``, oldest first."""
        rows = self._run("SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [{**dict(r), "detail": self._load(r["detail"])} for r in rows]

    def verdicts_since(self, after_id: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """Verdicts of every environment with an id above ``after_id``, oldest first."""
        rows = self._run("SELECT * FROM verdicts WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [{**dict(r), "metrics": self._load(r["metrics"])} for r in rows]

    def last_verdicts(self) -> dict[str, dict[str, Any]]:
        """Each environment's newest verdict."""
        rows = self._run(
            "SELECT v.* FROM verdicts v JOIN (SELECT environment, MAX(id) AS id FROM verdicts GROUP BY environment) m "
            "ON v.id = m.id"
        ).fetchall()
        return {r["environment"]: {**dict(r), "metrics": self._load(r["metrics"])} for r in rows}

    def last_actions(self, actions: tuple[str, ...]) -> dict[tuple[str, str], dict[str, Any]]:
        """Each environment's newest audit entry of each of ``actions``, by (environment, action)."""
        marks = ", ".join("?" for _ in actions)
        rows = self._run(
            "SELECT a.* FROM audit a JOIN (SELECT MAX(id) AS id FROM audit WHERE action IN "
            f"({marks}) GROUP BY environment, action) m ON a.id = m.id",
            actions,
        ).fetchall()
        return {(r["environment"], r["action"]): {**dict(r), "detail": self._load(r["detail"])} for r in rows}

    def controls(self) -> dict[str, Control]:
        """Every environment's :meth:`control` that was ever set."""
        rows = self._run("SELECT environment, paused, promote FROM controls").fetchall()
        return {r["environment"]: Control(bool(r["paused"]), r["promote"]) for r in rows}

    def locked(self) -> list[str]:
        """The environments with a writer-lock row (its holder may be gone: see :meth:`holder`)."""
        return [r["environment"] for r in self._run("SELECT environment FROM locks ORDER BY environment")]


class StateStore(StateRecords):
    """The engine's record in SQLite, and its writer lock. Short transactions only: a rollback never waits
    long for a write."""

    def __init__(self, path: Path | str, create: bool = True, redactor: Redactor | None = None) -> None:
        self.path = Path(path)
        if redactor is not None:
            self.redactor = redactor
        self._connections = ThreadConnections(self._connect)
        #: the file did not exist and ``create`` was False: an empty store in memory, nothing written
        self.missing = not create and not self.path.exists()
        if self.missing:
            memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            memory.row_factory = sqlite3.Row
            memory.executescript(SCHEMA)
            self._add_missing_columns(memory)
            self._connections = ThreadConnections(lambda: memory)
            return
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = self._db
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
            self._add_missing_columns(db)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: cannot open the state database ({exc})") from exc

    def _connect(self) -> sqlite3.Connection:
        """A connection for the calling thread (the agent works from several; SQLite's own objects are per thread)."""
        try:
            db = sqlite3.connect(str(self.path), isolation_level=None, timeout=15, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA synchronous=FULL")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: cannot open the state database ({exc})") from exc
        return db

    @property
    def _db(self) -> sqlite3.Connection:
        return self._connections.get()

    @staticmethod
    def _add_missing_columns(db: sqlite3.Connection) -> None:
        """A state file from before a column was added gets it (another process may add it first)."""
        for table, column, kind in ADDED_COLUMNS:
            if column in {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}:
                continue
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise

    def close(self) -> None:
        self._connections.close()

    def tx(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return immediate(self._db)

    # --- the writer lock -------------------------------------------------------------------------

    def acquire(self, environment: str, now: float) -> str | None:
        """Take the writer lock of ``environment`` for this process.

        Returns a note when a stale lock (its process gone) was taken over; raises
        :class:`StateError` when a live process holds it.
        """
        me, pid, host = actor(), os.getpid(), socket.gethostname()
        with self.tx() as db:
            row = db.execute("SELECT * FROM locks WHERE environment = ?", (environment,)).fetchone()
            note = None
            if row is not None:
                same_host = row["host"] == host
                if row["pid"] == pid and same_host:
                    return None
                if not same_host or pid_alive(row["pid"]):
                    raise StateError(
                        f"environment {environment} is being advanced by {row['owner']} (pid {row['pid']} on "
                        f"{row['host']}); wait for it to finish, or run `rollout rollback --env {environment}` "
                        "to stop the feature now"
                    )
                note = f"took over a stale lock left by pid {row['pid']} ({row['owner']})"
                db.execute("DELETE FROM locks WHERE environment = ?", (environment,))
            db.execute(
                "INSERT INTO locks (environment, owner, pid, host, acquired_at) VALUES (?, ?, ?, ?, ?)",
                (environment, me, pid, host, now),
            )
        return note

    def release(self, environment: str) -> None:
        self._db.execute("DELETE FROM locks WHERE environment = ? AND pid = ?", (environment, os.getpid()))

    def in_tx(self, db: Any) -> bool:
        return bool(db.in_transaction)

    def holder(self, environment: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT * FROM locks WHERE environment = ?", (environment,)).fetchone()
        return dict(row) if row else None
