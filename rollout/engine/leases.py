"""Who drives an environment: an always-on agent's lease, with a fencing token.

An agent owns an environment while its lease row is fresh: a time to live it renews in the
background, not a TCP connection, so a frozen process (SIGSTOP, a paused VM, a partition with its
connection still open) loses it when it stops renewing. Every take-over adds one to the lease's
``token``, a number that only grows (a released lease keeps its token: it is expired, never
deleted). Each write an agent makes to an environment's record (and each flag intent, which is
such a write) runs under :func:`rollout.engine.state.fenced`: checked against the token in the same
transaction, refused with :class:`~rollout.engine.state.LeaseLost` once a newer owner exists. A
lease is also checked locally before each write: an agent that has not renewed within its time to
live, by its own monotonic clock (it was frozen), stops before it asks the database at all.

Lease times are the state database's clock on PostgreSQL (agents on machines whose clocks disagree
still agree on expiry), the caller's clock on SQLite (one machine). The kill path takes no lease:
``rollout rollback`` turns the flag off from anywhere, and the agent then sees ``rolled_back``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout.engine.state import LeaseLost, StateRecords

#: the share of the time to live kept as a margin by the local check (clock rates, a slow statement)
LOCAL_MARGIN = 0.2


@dataclass
class Lease:
    """An agent's hold on one environment (a :class:`~rollout.engine.state.Fence`)."""

    environment: str
    owner: str
    token: int
    ttl: float
    monotonic: Callable[[], float]
    #: this process's monotonic time past which it may not act without renewing
    valid_until: float
    #: renews the lease now (True: still this owner's, with this token); None: cannot
    renew_now: Callable[[], bool] | None = None

    def check_local(self) -> None:
        """Raise :class:`LeaseLost` when the lease was not renewed in time (the process was frozen,
        or starved) and cannot be renewed now: past its deadline, a write goes on only after a
        renewal proves nobody took over."""
        late = self.monotonic() - self.valid_until
        if late >= 0 and not (self.renew_now is not None and self.renew_now()):
            raise LeaseLost(
                f"{self.owner}'s lease on {self.environment} (token {self.token}) was not renewed in time "
                f"({late:.1f}s past its local deadline): nothing more is written until it is taken again"
            )

    @property
    def held(self) -> bool:
        return self.monotonic() < self.valid_until


@dataclass(frozen=True)
class LeaseRow:
    """A lease as recorded."""

    environment: str
    owner: str
    token: int
    expires_at: float
    acquired_at: float
    renewed_at: float

    @classmethod
    def of(cls, row: Any) -> LeaseRow:
        return cls(
            row["environment"],
            row["owner"],
            int(row["token"]),
            float(row["expires_at"]),
            float(row["acquired_at"]),
            float(row["renewed_at"]),
        )


def _local_deadline(started: float, ttl: float) -> float:
    return started + ttl * (1 - LOCAL_MARGIN)


def claim(
    state: StateRecords, environment: str, owner: str, ttl: float, now: float, monotonic: Callable[[], float]
) -> tuple[Lease, LeaseRow | None] | None:
    """Take ``environment`` for ``owner`` when nobody's lease is fresh (its token grows by one).
    Returns the lease and the row it replaced (None: never leased), or None when another owner's
    lease is fresh."""
    started = monotonic()
    at = state.server_time(now)
    with state.tx() as db:
        before = state.execute("SELECT * FROM leases WHERE environment = ?", (environment,), db).fetchone()
        if before is not None and float(before["expires_at"]) >= at:
            return None
        # one statement decides between agents claiming at once: the row inserted or updated only
        # while nobody's lease is fresh, its token one more than the row's as it is then
        row = state.execute(
            "INSERT INTO leases (environment, owner, token, expires_at, acquired_at, renewed_at) "
            "VALUES (?, ?, 1, ?, ?, ?) ON CONFLICT (environment) DO UPDATE SET owner = excluded.owner, "
            "token = leases.token + 1, expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, "
            "renewed_at = excluded.renewed_at WHERE leases.expires_at < excluded.acquired_at RETURNING token",
            (environment, owner, at + ttl, at, at),
            db,
        ).fetchone()
    if row is None:
        return None
    token = int(row["token"])
    lease = Lease(environment, owner, token, ttl, monotonic, _local_deadline(started, ttl))
    return lease, LeaseRow.of(before) if before is not None else None


def claim_many(
    state: StateRecords,
    environments: list[str],
    owner: str,
    ttl: float,
    now: float,
    monotonic: Callable[[], float],
) -> dict[str, tuple[Lease, LeaseRow | None]]:
    """:func:`claim` for many environments in one transaction of two statements (a dead agent's
    hundreds of environments are taken in one round); returns those taken."""
    if not environments:
        return {}
    started = monotonic()
    at = state.server_time(now)
    marks = ", ".join("?" for _ in environments)
    with state.tx() as db:
        before = {
            r["environment"]: LeaseRow.of(r)
            for r in state.execute(f"SELECT * FROM leases WHERE environment IN ({marks})", environments, db)
        }
        free = [e for e in environments if e not in before or before[e].expires_at < at]
        if not free:
            return {}
        values = ", ".join("(?, ?, 1, ?, ?, ?)" for _ in free)
        rows = state.execute(
            f"INSERT INTO leases (environment, owner, token, expires_at, acquired_at, renewed_at) VALUES {values} "
            "ON CONFLICT (environment) DO UPDATE SET owner = excluded.owner, token = leases.token + 1, "
            "expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, renewed_at = excluded.renewed_at "
            "WHERE leases.expires_at < excluded.acquired_at RETURNING environment, token",
            [v for e in free for v in (e, owner, at + ttl, at, at)],
            db,
        ).fetchall()
    deadline = _local_deadline(started, ttl)
    return {
        r["environment"]: (
            Lease(r["environment"], owner, int(r["token"]), ttl, monotonic, deadline),
            before.get(r["environment"]),
        )
        for r in rows
    }


def renew(state: StateRecords, lease: Lease, now: float) -> bool:
    """Extend ``lease`` by its time to live; False when it is no longer this owner's (taken over)."""
    started = lease.monotonic()
    at = state.server_time(now)
    row = state.execute(
        "UPDATE leases SET expires_at = ?, renewed_at = ? WHERE environment = ? AND owner = ? AND token = ? "
        "RETURNING token",
        (at + lease.ttl, at, lease.environment, lease.owner, lease.token),
    ).fetchone()
    if row is None:
        lease.valid_until = started  # not ours: every later check fails
        return False
    lease.valid_until = _local_deadline(started, lease.ttl)
    return True


def renew_all(state: StateRecords, owner: str, held: list[Lease], now: float) -> list[Lease]:
    """Extend every lease of ``held`` still ``owner``'s, in one statement; returns the ones lost
    (taken over, or never renewed in time and taken)."""
    if not held:
        return []
    started = min(lease.monotonic() for lease in held)
    at = state.server_time(now)
    marks = ", ".join("?" for _ in held)
    rows = state.execute(
        f"UPDATE leases SET expires_at = ?, renewed_at = ? WHERE owner = ? AND expires_at > 0 AND environment IN "
        f"({marks}) RETURNING environment, token",
        (at + held[0].ttl, at, owner, *(lease.environment for lease in held)),
    ).fetchall()
    still = {(r["environment"], int(r["token"])) for r in rows}
    lost = []
    for lease in held:
        if (lease.environment, lease.token) in still:
            lease.valid_until = _local_deadline(started, lease.ttl)
        else:
            lease.valid_until = started
            lost.append(lease)
    return lost


def release(state: StateRecords, lease: Lease) -> None:
    """Give ``lease`` up now (its token is kept: the next owner's is one more)."""
    state.execute(
        "UPDATE leases SET expires_at = 0 WHERE environment = ? AND owner = ? AND token = ?",
        (lease.environment, lease.owner, lease.token),
    )
    lease.valid_until = lease.monotonic()


def holder(state: StateRecords, environment: str, now: float) -> LeaseRow | None:
    """The fresh lease on ``environment``, or None."""
    row = state.execute(
        "SELECT * FROM leases WHERE environment = ? AND expires_at >= ?", (environment, state.server_time(now))
    ).fetchone()
    return LeaseRow.of(row) if row is not None else None


def leases(state: StateRecords, now: float) -> dict[str, LeaseRow]:
    """Every fresh lease, by environment."""
    rows = state.execute("SELECT * FROM leases WHERE expires_at >= ?", (state.server_time(now),)).fetchall()
    return {r["environment"]: LeaseRow.of(r) for r in rows}


def last_lease(state: StateRecords, environment: str) -> LeaseRow | None:
    """The lease row of ``environment``, fresh or not (who held it last, and its token)."""
    row = state.execute("SELECT * FROM leases WHERE environment = ?", (environment,)).fetchone()
    return LeaseRow.of(row) if row is not None else None


def all_leases(state: StateRecords) -> list[LeaseRow]:
    """Every lease row, fresh or not."""
    return [LeaseRow.of(r) for r in state.execute("SELECT * FROM leases").fetchall()]
