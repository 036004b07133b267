"""The ``postgres`` flag source, a replica's side of the fleet's flag row (:mod:`rollout.util.flagrow`):
``rollout serve --flag-db`` applies the row to the service's live settings the moment it is NOTIFYed
(polled as a safety net), reports the version it applied, and renews its flag lease only while it
can read the row. Who is in is decided from the settings (:class:`SettingsProvider`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from openfeature.provider import FeatureProvider

from rollout.booking.flags.base import FLAG_KEY, SettingsProvider
from rollout.util.flagrow import CHANNEL, FLAG_LEASE_S, connect


class FlagFollower:
    """A replica's side: follows its environment's flag row into the service's live settings."""

    name = "postgres"
    flag_key = FLAG_KEY

    def __init__(
        self,
        url: str,
        environment: str,
        replica_id: str | None = None,
        poll: float = 0.5,
        flag_variable: str = "WHATSAPP_NOTIFICATIONS_ENABLED",
        percent_variable: str = "WHATSAPP_ROLLOUT_PERCENT",
        lease: float = FLAG_LEASE_S,
    ) -> None:
        self.url, self.environment, self.poll, self.lease = url, environment, poll, lease
        self.replica_id = replica_id or f"{socket.gethostname()}-{os.getpid()}"
        self.variables = (flag_variable, percent_variable)
        self.version: int | None = None
        self._refreshed_at: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        connect(url).close()  # a bad URL stops start-up with one line, not a dead thread later

    def provider(self, live: Any) -> FeatureProvider:
        return SettingsProvider(live)

    def refreshed_at(self) -> float | None:
        return self._refreshed_at

    def start(self, live: Any) -> None:
        self._live = live
        self._thread = threading.Thread(target=self._run, name="flag-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _apply(self, conn: Any) -> None:
        row = conn.execute(
            "SELECT enabled, percent, version FROM rollout_flags WHERE environment = %s", (self.environment,)
        ).fetchone()
        if row is not None and row["version"] != self.version:
            flag, percent = self.variables
            values = {flag: "true" if row["enabled"] else "false"}
            if row["percent"] is not None:
                values[percent] = str(row["percent"])
            self._live.set_overlay(values, version=row["version"])
            self.version = row["version"]
        enabled, share = (row["enabled"], row["percent"]) if row else (None, None)
        conn.execute(
            "INSERT INTO rollout_replicas (replica_id, environment, applied_version, enabled, percent, seen_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (replica_id) DO UPDATE SET environment = EXCLUDED.environment,"
            " applied_version = EXCLUDED.applied_version, enabled = EXCLUDED.enabled, percent = EXCLUDED.percent, "
            "seen_at = EXCLUDED.seen_at",
            (self.replica_id, self.environment, self.version, enabled, share, time.time()),
        )
        if row is not None:  # renewed only once the engine can see this replica: seen <=> still obeying
            self._live.renew_lease(self.lease)
            self._refreshed_at = time.time()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = connect(self.url)
                conn.execute(f"LISTEN {CHANNEL}")
                while not self._stop.is_set():
                    self._apply(conn)
                    # wake at once on a NOTIFY; the poll is the safety net (and the heartbeat)
                    for _ in conn.notifies(timeout=self.poll, stop_after=1):
                        pass
            except Exception:  # noqa: BLE001 - the database went away: try again; the lease runs out meanwhile
                if self._stop.wait(1.0):
                    return
