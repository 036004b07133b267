"""The service's durable state: SQLite on one machine, PostgreSQL for a fleet of replicas.

A booking and its WhatsApp notification are written in one transaction; the notification is an
outbox row that the worker claims (``pending -> sending``) in a committed transaction *before* it
calls the provider. A row found in ``sending`` after a crash may or may not have reached the
provider, so it is never sent again: it ends ``failed/unconfirmed`` and goes to the fallback outbox.
That is what makes a double WhatsApp confirmation impossible.

Every claim names its replica and its time. On PostgreSQL many replicas share one outbox: claims
skip rows another replica has locked (``FOR UPDATE SKIP LOCKED``), a claim older than the send
timeout plus a grace is a dead replica's and is recovered as above, and a result is written back
only while its claim still holds, so a late answer never overwrites a recovered row.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives a crash of
the process; only a power loss can take back the last few commits.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rollout.booking.service import schema
from rollout.util.sqlite import immediate

BOOKING_FIELDS = (
    "booking_ref",
    "customer_id",
    "parent_name",
    "child_name",
    "phone",
    "event_name",
    "venue",
    "event_date",
    "amount",
    "payment_method",
)


class DuplicateBooking(Exception):
    """A booking with that reference exists already."""


@dataclass(frozen=True)
class Due:
    """A notification claimed for sending, with what the send needs."""

    booking_id: int
    attempts: int
    customer_id: str
    phone: str
    parameters: tuple[str, ...]
    #: when the booking was made: a confirmation's delay is measured from here
    created_at: float = 0.0
    #: the customer was in the rollout's share when the booking was made (decided then, never widened later)
    in_cohort: bool = True
    #: the customer had opted out of WhatsApp when the notification was claimed, just before its send
    opted_out: bool = False


@dataclass(frozen=True)
class Result:
    """What became of one claimed notification; written back by :meth:`Store.apply_results`."""

    booking_id: int
    status: str  # pending (retry later) | sent | failed | skipped
    reason: str | None = None
    next_attempt_at: float | None = None
    message_id: str | None = None
    wamid: str | None = None
    error: str | None = None
    fallback: bool = False


class _Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any: ...


#: what a claim reads of the booking (``b``) and the customer's preferences (``p``)
CLAIMED_FIELDS = (
    "b.customer_id, b.phone, b.parent_name, b.event_name, b.event_date, b.venue, b.child_name, b.booking_ref, "
    "b.amount, b.payment_method, b.created_at, COALESCE(p.whatsapp_opt_out, 0) AS opted_out"
)

#: outcome events that belong to a claim: a result written back after its claim was recovered
#: elsewhere is dropped with them (its call events stay: the call happened)
OUTCOME_EVENTS = frozenset({"sent", "failed", "skipped", "fallback", "cohort"})


class Store:
    """All SQL of the service, written once; :class:`SqliteStore` and
    :class:`rollout.booking.service.pgstore.PostgresStore` supply the connection, transactions and the few
    words that differ. One connection, used from the event loop's thread only; the outbox's claims
    and write-backs go through the ``*_async`` calls, which a store on a server overrides so that
    the loop is not held while the server works.

    ``replica_id`` names this process in the claims it makes. ``shared`` says whether other
    processes write the same outbox (PostgreSQL): then start-up recovers only this replica's own
    claims and stale ones, and claims skip rows another replica has locked.
    """

    shared = False
    kind = "sqlite"
    #: appended to the SELECT that picks rows to claim or recover
    skip_locked = ""
    #: appended to a SELECT that locks the rows it reads until the transaction ends
    for_update = ""
    _duplicate: tuple[type[BaseException], ...] = ()

    def __init__(self, replica_id: str) -> None:
        self.replica_id = replica_id

    def close(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Close, from the event loop (a store may hold a connection of the loop's own)."""
        self.close()

    def _tx(self) -> contextlib.AbstractContextManager[_Tx]:
        raise NotImplementedError

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._one(sql, params)
        return next(iter(row.values())) if row else None

    # --- bookings -----------------------------------------------------------------------------

    def create_booking(
        self,
        booking: dict[str, Any],
        now: float,
        decision: str | None = None,
        events: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Insert a booking, its notification and its ``events`` (kind, reason) in one transaction.

        ``decision`` is why the booking gets no WhatsApp, decided as it is made: ``flag_off`` is
        written ``skipped`` at once; ``not_in_cohort`` stays ``pending`` with that reason, so the
        control's confirmation takes the same path through the outbox as the treatment's."""
        try:
            with self._tx() as db:
                booking_id = int(
                    db.execute(
                        f"INSERT INTO bookings ({', '.join(BOOKING_FIELDS)}, created_at) "
                        f"VALUES ({', '.join('?' * len(BOOKING_FIELDS))}, ?) RETURNING id",
                        [str(booking[f]) for f in BOOKING_FIELDS] + [now],
                    ).fetchone()[0]
                )
                db.execute(
                    "INSERT INTO notifications (booking_id, status, reason, next_attempt_at, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (booking_id, "skipped" if decision == "flag_off" else "pending", decision, now, now, now),
                )
                db.executemany(
                    "INSERT INTO events (ts, kind, reason, booking_id) VALUES (?, ?, ?, ?)",
                    [(now, kind, reason, booking_id) for kind, reason in events],
                )
        except self._duplicate as exc:
            raise DuplicateBooking(booking["booking_ref"]) from exc
        return booking_id

    def booking(self, booking_id: int) -> dict[str, Any] | None:
        return self._one(
            "SELECT b.*, n.status AS n_status, n.reason AS n_reason, n.attempts AS n_attempts, "
            "n.message_id AS n_message_id, n.wamid AS n_wamid, n.updated_at AS n_updated_at, "
            "n.last_error AS n_last_error, n.next_attempt_at AS n_next_attempt_at, f.reason AS f_reason, "
            "f.created_at AS f_created_at "
            "FROM bookings b JOIN notifications n ON n.booking_id = b.id "
            "LEFT JOIN fallback_outbox f ON f.booking_id = b.id WHERE b.id = ?",
            (booking_id,),
        )

    # --- the outbox ---------------------------------------------------------------------------

    def recover_in_flight(self, now: float, fallback: bool, stale_before: float) -> list[int]:
        """At start-up: rows left in ``sending`` may have been sent; fail them as unconfirmed.

        Alone on its database the store takes every such row. Shared, it takes its own claims (a
        restart under the same replica id) and claims older than ``stale_before``; another
        replica's fresh claim is still in flight.
        """
        if not self.shared:
            return self._recover(now, fallback, "", (), "service stopped while the send was in flight")
        return self._recover(
            now,
            fallback,
            " AND (claimed_by = ? OR claimed_by IS NULL OR claimed_at < ?)",
            (self.replica_id, stale_before),
            "service stopped while the send was in flight",
        )

    def recover_stale(self, now: float, fallback: bool, stale_before: float) -> list[int]:
        """Claims older than ``stale_before`` (their replica died or hung past the send timeout):
        fail them as unconfirmed, exactly as a restart does, never send them again."""
        return self._recover(
            now,
            fallback,
            " AND claimed_at < ?",
            (stale_before,),
            "the replica holding the send stopped answering; not resent",
        )

    def _recover(self, now: float, fallback: bool, condition: str, params: tuple, error: str) -> list[int]:
        with self._tx() as db:
            ids = [
                r[0]
                for r in db.execute(
                    f"SELECT booking_id FROM notifications WHERE status = 'sending'{condition}{self.skip_locked}",
                    params,
                ).fetchall()
            ]
            db.executemany(
                "UPDATE notifications SET status='failed', reason='unconfirmed', updated_at=?, last_error=? "
                "WHERE booking_id=?",
                [(now, error, i) for i in ids],
            )
            db.executemany(
                "INSERT INTO events (ts, kind, reason, booking_id) VALUES (?, 'failed', 'unconfirmed', ?)",
                [(now, i) for i in ids],
            )
            if fallback:
                self._insert_fallbacks(db, [(i, "unconfirmed") for i in ids], now)
        return ids

    def claim_due(self, now: float, limit: int) -> list[Due]:
        """Mark up to ``limit`` due notifications ``sending`` by this replica (committed) and return
        them. Rows another replica is claiming at the same moment are skipped, not waited for."""
        return _due(self._claim(now, limit)) if limit > 0 else []

    async def claim_due_async(self, now: float, limit: int) -> list[Due]:
        """:meth:`claim_due` for the outbox's loop: a store whose claim waits on a server (PostgreSQL)
        lets the loop go on with the sends in flight meanwhile; SQLite's work is in-process anyway."""
        return _due(await self._claim_async(now, limit)) if limit > 0 else []

    async def _claim_async(self, now: float, limit: int) -> list[dict[str, Any]]:
        return self._claim(now, limit)

    def _claim(self, now: float, limit: int) -> list[dict[str, Any]]:
        """The claimed rows, each with its notification's ``attempts`` and ``reason``, its booking's
        fields and the customer's ``opted_out`` (read with the claim: no query per send)."""
        with self._tx() as db:
            rows = db.execute(
                "UPDATE notifications SET status='sending', attempts=attempts+1, updated_at=?, claimed_by=?, "
                "claimed_at=? WHERE booking_id IN (SELECT booking_id FROM notifications WHERE status='pending' "
                f"AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?{self.skip_locked}) "
                "RETURNING booking_id, attempts, reason",
                (now, self.replica_id, now, now, limit),
            ).fetchall()
        if not rows:
            return []
        claimed = {r[0]: (r[1], r[2]) for r in rows}
        bookings = self._all(
            f"SELECT b.id AS booking_id, {CLAIMED_FIELDS} FROM bookings b "
            "LEFT JOIN preferences p ON p.customer_id = b.customer_id "
            f"WHERE b.id IN ({','.join('?' * len(claimed))})",
            list(claimed),
        )
        return [{**b, "attempts": claimed[b["booking_id"]][0], "reason": claimed[b["booking_id"]][1]} for b in bookings]

    def apply_results(self, results: Sequence[Result], events: Iterable[tuple], now: float) -> list[int]:
        """Write back outcomes, fallbacks and metric events in one transaction.

        Only results whose claim this replica still holds are written; the ids of the others (their
        claim was recovered as stale meanwhile, and already ended ``unconfirmed``) are returned.
        """
        events = list(events)
        stale: set[int] = set()
        with self._tx() as db:
            if results:
                ids = [r.booking_id for r in results]
                held = {
                    row[0]
                    for row in db.execute(
                        f"SELECT booking_id FROM notifications WHERE status='sending' AND claimed_by=? "
                        f"AND booking_id IN ({','.join('?' * len(ids))}){self.for_update}",
                        [self.replica_id, *ids],
                    ).fetchall()
                }
                stale = set(ids) - held
                results = [r for r in results if r.booking_id in held]
                events = [e for e in events if not (e[4] in stale and e[1] in OUTCOME_EVENTS)]
            db.executemany(
                "UPDATE notifications SET status=?, reason=?, next_attempt_at=COALESCE(?, next_attempt_at), "
                "message_id=COALESCE(?, message_id), wamid=COALESCE(?, wamid), "
                "last_error=COALESCE(?, last_error), updated_at=? WHERE booking_id=?",
                [
                    (r.status, r.reason, r.next_attempt_at, r.message_id, r.wamid, r.error, now, r.booking_id)
                    for r in results
                ],
            )
            self._insert_fallbacks(db, [(r.booking_id, r.reason or "failed") for r in results if r.fallback], now)
            db.executemany(
                "INSERT INTO events (ts, kind, reason, latency_ms, booking_id) VALUES (?, ?, ?, ?, ?)", events
            )
        return sorted(stale)

    async def apply_results_async(self, results: Sequence[Result], events: Iterable[tuple], now: float) -> list[int]:
        """:meth:`apply_results` for the outbox's loop (see :meth:`claim_due_async`)."""
        return self.apply_results(results, events, now)

    @staticmethod
    def _insert_fallbacks(db: _Tx, rows: list[tuple[int, str]], now: float) -> None:
        db.executemany(
            "INSERT INTO fallback_outbox (booking_id, reason, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (booking_id) DO NOTHING",
            [(booking_id, reason, now) for booking_id, reason in rows],
        )

    def fallbacks(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._all(
            "SELECT f.id, f.booking_id, f.reason, f.created_at, b.booking_ref, b.phone FROM fallback_outbox f "
            "JOIN bookings b ON b.id = f.booking_id ORDER BY f.id DESC LIMIT ?",
            (limit,),
        )

    def outbox_counts(self, now: float) -> dict[str, int]:
        """Notifications by status; ``due`` counts pending ones whose time has come."""
        counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 0}
        counts.update(
            {r["status"]: r["n"] for r in self._all("SELECT status, COUNT(*) AS n FROM notifications GROUP BY status")}
        )
        counts["due"] = self._value(
            "SELECT COUNT(*) AS n FROM notifications WHERE status='pending' AND next_attempt_at <= ?", (now,)
        )
        counts["fallback"] = self._value("SELECT COUNT(*) AS n FROM fallback_outbox")
        return counts

    # --- metrics ------------------------------------------------------------------------------

    def event_counts(self, since: float) -> dict[tuple[str, str | None], int]:
        rows = self._all("SELECT kind, reason, COUNT(*) AS n FROM events WHERE ts >= ? GROUP BY kind, reason", (since,))
        return {(r["kind"], r["reason"]): r["n"] for r in rows}

    def call_latencies(self, since: float) -> list[float]:
        rows = self._all(
            "SELECT latency_ms FROM events WHERE ts >= ? AND kind IN ('call_ok', 'call_error') "
            "AND latency_ms IS NOT NULL",
            (since,),
        )
        return [r["latency_ms"] for r in rows]

    def cohort_stats(self, since: float) -> dict[tuple[str, str], dict[str, float]]:
        """Per (kind, cohort) of the ``booking``, ``booking_error`` and ``confirmation`` events since
        ``since``: count, mean and mean square of their latency (the standard deviation follows)."""
        rows = self._all(
            "SELECT kind, reason, COUNT(*) AS n, AVG(latency_ms) AS mean, AVG(latency_ms * latency_ms) AS square "
            "FROM events WHERE ts >= ? AND kind IN ('booking', 'booking_error', 'confirmation') GROUP BY kind, reason",
            (since,),
        )
        return {(r["kind"], r["reason"]): {"n": r["n"], "mean": r["mean"], "square": r["square"]} for r in rows}

    def cohort_latencies(self, kind: str, since: float, limit: int) -> dict[str, list[float]]:
        """The newest ``limit`` latencies per cohort of the ``kind`` events (``booking``,
        ``confirmation``) since ``since``: a rank test's samples."""
        return {
            cohort: [
                r["latency_ms"]
                for r in self._all(
                    "SELECT latency_ms FROM events WHERE ts >= ? AND kind = ? AND reason = ? "
                    "AND latency_ms IS NOT NULL ORDER BY ts DESC LIMIT ?",
                    (since, kind, cohort, limit),
                )
            ]
            for cohort in ("treatment", "control")
        }

    def prune_events(self, before: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM events WHERE ts < ?", (before,)).rowcount

    # --- preferences and templates -------------------------------------------------------------

    def preferences(self, customer_id: str) -> dict[str, Any]:
        row = self._one("SELECT whatsapp_opt_out, updated_at FROM preferences WHERE customer_id = ?", (customer_id,))
        return {
            "customer_id": customer_id,
            "whatsapp_opt_out": bool(row and row["whatsapp_opt_out"]),
            "updated_at": row["updated_at"] if row else None,
        }

    def set_preferences(self, customer_id: str, opt_out: bool, now: float) -> dict[str, Any]:
        with self._tx() as db:
            db.execute(
                "INSERT INTO preferences (customer_id, whatsapp_opt_out, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (customer_id) DO UPDATE SET whatsapp_opt_out=excluded.whatsapp_opt_out, "
                "updated_at=excluded.updated_at",
                (customer_id, int(opt_out), now),
            )
        return self.preferences(customer_id)

    def replace_templates(self, templates: list[dict[str, Any]], now: float) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM templates")
            db.executemany(
                "INSERT INTO templates (name, language, status, category, body, synced_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name, language) DO UPDATE SET status=excluded.status, "
                "category=excluded.category, body=excluded.body, synced_at=excluded.synced_at",
                [
                    (t["name"], t["language"], t.get("status"), t.get("category"), json.dumps(t.get("components")), now)
                    for t in templates
                ],
            )

    def templates(self) -> list[dict[str, Any]]:
        return self._all("SELECT name, language, status, category, synced_at FROM templates ORDER BY name, language")


class SqliteStore(Store):
    """The service alone on a SQLite file (the embedded default)."""

    _duplicate = (sqlite3.IntegrityError,)

    def __init__(self, path: Path | str, replica_id: str) -> None:
        super().__init__(replica_id)
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._tx() as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "schema_version" in tables:
                found = db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
            else:
                found = 1 if "notifications" in tables else 0  # a file from before the version table
            schema.migrate(db, found, schema.SQLITE, self.path)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> contextlib.AbstractContextManager[_Tx]:
        return immediate(self._db)

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self._db.execute(sql, params).fetchall()]


def _due(rows: list[dict[str, Any]]) -> list[Due]:
    """Claimed rows (see :meth:`Store._claim`) as what a send needs."""
    return [
        Due(
            r["booking_id"],
            r["attempts"],
            r["customer_id"],
            r["phone"],
            template_parameters(r),
            r["created_at"],
            in_cohort=r["reason"] != "not_in_cohort",
            opted_out=bool(r["opted_out"]),
        )
        for r in rows
    ]


def template_parameters(booking: dict[str, Any]) -> tuple[str, ...]:
    """The booking-confirmation template's 8 body parameters, in the template's order."""
    return tuple(
        str(booking[f])
        for f in (
            "parent_name",
            "event_name",
            "event_date",
            "venue",
            "child_name",
            "booking_ref",
            "amount",
            "payment_method",
        )
    )
