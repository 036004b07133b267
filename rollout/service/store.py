"""The service's durable state in SQLite.

A booking and its WhatsApp notification are written in one transaction; the notification is an
outbox row that the worker claims (``pending -> sending``) in a committed transaction *before* it
calls the provider. A row found in ``sending`` after a crash may or may not have reached the
provider, so it is never sent again: it ends ``failed/unconfirmed`` and goes to the fallback outbox.
That is what makes a double WhatsApp confirmation impossible.

WAL mode with ``synchronous=NORMAL``: a committed transaction survives a crash of the process;
only a power loss can take back the last few commits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
    id             INTEGER PRIMARY KEY,
    booking_ref    TEXT NOT NULL UNIQUE,
    customer_id    TEXT NOT NULL,
    parent_name    TEXT NOT NULL,
    child_name     TEXT NOT NULL,
    phone          TEXT NOT NULL,
    event_name     TEXT NOT NULL,
    venue          TEXT NOT NULL,
    event_date     TEXT NOT NULL,
    amount         TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    created_at     REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS notifications (
    booking_id      INTEGER PRIMARY KEY REFERENCES bookings(id),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    reason          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    message_id      TEXT,
    wamid           TEXT,
    last_error      TEXT,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(status, next_attempt_at);
CREATE TABLE IF NOT EXISTS fallback_outbox (
    id         INTEGER PRIMARY KEY,
    booking_id INTEGER NOT NULL UNIQUE REFERENCES bookings(id),
    reason     TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id         INTEGER PRIMARY KEY,
    ts         REAL NOT NULL,
    kind       TEXT NOT NULL,
    reason     TEXT,
    latency_ms REAL,
    booking_id INTEGER
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts, kind);
CREATE TABLE IF NOT EXISTS preferences (
    customer_id      TEXT PRIMARY KEY,
    whatsapp_opt_out INTEGER NOT NULL,
    updated_at       REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS templates (
    name      TEXT NOT NULL,
    language  TEXT NOT NULL,
    status    TEXT,
    category  TEXT,
    body      TEXT,
    synced_at REAL NOT NULL,
    PRIMARY KEY (name, language)
);
"""

BOOKING_FIELDS = (
    "booking_ref", "customer_id", "parent_name", "child_name", "phone", "event_name", "venue",
    "event_date", "amount", "payment_method",
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


class Store:
    """All SQL of the service. One connection, used from the event loop's thread only."""

    def __init__(self, path: Path | str) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    # --- bookings -----------------------------------------------------------------------------

    def create_booking(self, booking: dict[str, Any], now: float) -> int:
        """Insert a booking and its pending notification in one transaction."""
        db = self._tx()
        try:
            cur = db.execute(
                f"INSERT INTO bookings ({', '.join(BOOKING_FIELDS)}, created_at) "
                f"VALUES ({', '.join('?' * len(BOOKING_FIELDS))}, ?)",
                [str(booking[f]) for f in BOOKING_FIELDS] + [now],
            )
            booking_id = int(cur.lastrowid)
            db.execute(
                "INSERT INTO notifications (booking_id, status, next_attempt_at, created_at, updated_at) "
                "VALUES (?, 'pending', ?, ?, ?)",
                (booking_id, now, now, now),
            )
            db.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            db.execute("ROLLBACK")
            raise DuplicateBooking(booking["booking_ref"]) from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return booking_id

    def booking(self, booking_id: int) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT b.*, n.status AS n_status, n.reason AS n_reason, n.attempts AS n_attempts, "
            "n.message_id AS n_message_id, n.wamid AS n_wamid, n.updated_at AS n_updated_at, "
            "n.last_error AS n_last_error, n.next_attempt_at AS n_next_attempt_at, f.reason AS f_reason, f.created_at AS f_created_at "
            "FROM bookings b JOIN notifications n ON n.booking_id = b.id "
            "LEFT JOIN fallback_outbox f ON f.booking_id = b.id WHERE b.id = ?",
            (booking_id,),
        ).fetchone()
        return dict(row) if row else None

    # --- the outbox ---------------------------------------------------------------------------

    def recover_in_flight(self, now: float, fallback: bool) -> list[int]:
        """After a crash: rows left in ``sending`` may have been sent; fail them as unconfirmed."""
        db = self._tx()
        try:
            ids = [r[0] for r in db.execute("SELECT booking_id FROM notifications WHERE status = 'sending'")]
            db.executemany(
                "UPDATE notifications SET status='failed', reason='unconfirmed', updated_at=?, "
                "last_error='service stopped while the send was in flight' WHERE booking_id=?",
                [(now, i) for i in ids],
            )
            db.executemany(
                "INSERT INTO events (ts, kind, reason, booking_id) VALUES (?, 'failed', 'unconfirmed', ?)",
                [(now, i) for i in ids],
            )
            if fallback:
                self._insert_fallbacks(db, [(i, "unconfirmed") for i in ids], now)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return ids

    def claim_due(self, now: float, limit: int) -> list[Due]:
        """Mark up to ``limit`` due notifications ``sending`` (committed) and return them."""
        if limit <= 0:
            return []
        db = self._tx()
        try:
            rows = db.execute(
                "UPDATE notifications SET status='sending', attempts=attempts+1, updated_at=? "
                "WHERE booking_id IN (SELECT booking_id FROM notifications WHERE status='pending' "
                "AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?) "
                "RETURNING booking_id, attempts",
                (now, now, limit),
            ).fetchall()
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if not rows:
            return []
        attempts = {r[0]: r[1] for r in rows}
        marks = ",".join("?" * len(attempts))
        bookings = self._db.execute(
            f"SELECT id, customer_id, phone, parent_name, event_name, event_date, venue, child_name, "
            f"booking_ref, amount, payment_method FROM bookings WHERE id IN ({marks})",
            list(attempts),
        ).fetchall()
        return [
            Due(b["id"], attempts[b["id"]], b["customer_id"], b["phone"], template_parameters(dict(b)))
            for b in bookings
        ]

    def apply_results(self, results: Sequence[Result], events: Iterable[tuple], now: float) -> None:
        """Write back outcomes, fallbacks and metric events in one transaction."""
        db = self._tx()
        try:
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
            db.executemany("INSERT INTO events (ts, kind, reason, latency_ms, booking_id) VALUES (?, ?, ?, ?, ?)",
                           list(events))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @staticmethod
    def _insert_fallbacks(db: sqlite3.Connection, rows: list[tuple[int, str]], now: float) -> None:
        db.executemany(
            "INSERT OR IGNORE INTO fallback_outbox (booking_id, reason, created_at) VALUES (?, ?, ?)",
            [(booking_id, reason, now) for booking_id, reason in rows],
        )

    def fallbacks(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT f.id, f.booking_id, f.reason, f.created_at, b.booking_ref, b.phone FROM fallback_outbox f "
            "JOIN bookings b ON b.id = f.booking_id ORDER BY f.id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [dict(r) for r in rows]

    def outbox_counts(self, now: float) -> dict[str, int]:
        """Notifications by status; ``due`` counts pending ones whose time has come."""
        rows = self._db.execute("SELECT status, COUNT(*) FROM notifications GROUP BY status").fetchall()
        counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 0}
        counts.update({r[0]: r[1] for r in rows})
        counts["due"] = self._db.execute("SELECT COUNT(*) FROM notifications WHERE status='pending' AND "
                                         "next_attempt_at <= ?", (now,)).fetchone()[0]
        counts["fallback"] = self._db.execute("SELECT COUNT(*) FROM fallback_outbox").fetchone()[0]
        return counts

    # --- metrics ------------------------------------------------------------------------------

    def event_counts(self, since: float) -> dict[tuple[str, str | None], int]:
        rows = self._db.execute(
            "SELECT kind, reason, COUNT(*) FROM events WHERE ts >= ? GROUP BY kind, reason", (since,)
        ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}

    def call_latencies(self, since: float) -> list[float]:
        rows = self._db.execute(
            "SELECT latency_ms FROM events WHERE ts >= ? AND kind IN ('call_ok', 'call_error') "
            "AND latency_ms IS NOT NULL",
            (since,),
        ).fetchall()
        return [r[0] for r in rows]

    def prune_events(self, before: float) -> int:
        db = self._tx()
        count = db.execute("DELETE FROM events WHERE ts < ?", (before,)).rowcount
        db.execute("COMMIT")
        return count

    # --- preferences and templates -------------------------------------------------------------

    def opted_out(self, customer_id: str) -> bool:
        row = self._db.execute("SELECT whatsapp_opt_out FROM preferences WHERE customer_id = ?",
                               (customer_id,)).fetchone()
        return bool(row and row[0])

    def preferences(self, customer_id: str) -> dict[str, Any]:
        row = self._db.execute("SELECT whatsapp_opt_out, updated_at FROM preferences WHERE customer_id = ?",
                               (customer_id,)).fetchone()
        return {
            "customer_id": customer_id,
            "whatsapp_opt_out": bool(row and row[0]),
            "updated_at": row[1] if row else None,
        }

    def set_preferences(self, customer_id: str, opt_out: bool, now: float) -> dict[str, Any]:
        db = self._tx()
        db.execute(
            "INSERT INTO preferences (customer_id, whatsapp_opt_out, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(customer_id) DO UPDATE SET whatsapp_opt_out=excluded.whatsapp_opt_out, "
            "updated_at=excluded.updated_at",
            (customer_id, int(opt_out), now),
        )
        db.execute("COMMIT")
        return self.preferences(customer_id)

    def replace_templates(self, templates: list[dict[str, Any]], now: float) -> None:
        db = self._tx()
        try:
            db.execute("DELETE FROM templates")
            db.executemany(
                "INSERT OR REPLACE INTO templates (name, language, status, category, body, synced_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(t["name"], t["language"], t.get("status"), t.get("category"), json.dumps(t.get("components")), now)
                 for t in templates],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def templates(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT name, language, status, category, synced_at FROM templates "
                                "ORDER BY name, language").fetchall()
        return [dict(r) for r in rows]


def template_parameters(booking: dict[str, Any]) -> tuple[str, ...]:
    """The booking-confirmation template's 8 body parameters, in the template's order."""
    return tuple(
        str(booking[f])
        for f in ("parent_name", "event_name", "event_date", "venue", "child_name", "booking_ref", "amount",
                  "payment_method")
    )
