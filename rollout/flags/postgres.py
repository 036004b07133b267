"""The ``postgres`` flag backend: the fleet's flag row (:mod:`rollout.util.flagrow`), written with its
version bumped and NOTIFYed in one transaction. Each replica follows the row
(:class:`rollout.booking.flags.postgres.FlagFollower`); :class:`rollout.targets.fleet.ReplicasTarget`
confirms a change only when every live replica reports it applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from rollout.flags.base import FlagWriteError, RecordedBackend, file_lock
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec, Reference
from rollout.playbook.plugins import FlagPlugin
from rollout.util.flagrow import CHANNEL, REPLICA_TTL_S, connect
from rollout.util.yamlfile import FieldProblems


class PostgresFlag(FlagSpec):
    """``backend: postgres``: the row every replica follows, in ``database`` (``${FLAG_DB_URL}``)."""

    backend: Literal["postgres"] = "postgres"
    database: Reference | None = None

    @model_validator(mode="after")
    def _complete(self) -> PostgresFlag:
        if not self.database:
            raise FieldProblems([(("database",), "required for the postgres backend: a reference like ${FLAG_DB_URL}")])
        return self


class PostgresFlags(RecordedBackend):
    """The engine's side: the environment's flag row (see the module docstring)."""

    spec: PostgresFlag

    record_only = False  # the server is the record

    def __init__(self, spec: PostgresFlag, env: str, state_dir: Path, url: str) -> None:
        super().__init__(spec, env, state_dir)
        self.environment = env
        self._db = connect(url)

    def describe(self) -> str:
        return f"rollout_flags[{self.environment}]"

    def state(self) -> tuple[bool, int | None]:
        row = self._db.execute(
            "SELECT enabled, percent FROM rollout_flags WHERE environment = %s", (self.environment,)
        ).fetchone()
        return (bool(row["enabled"]), row["percent"]) if row else (False, None)

    def _remember(self, enabled: bool, percent: int | None) -> None:
        """The row is the record: nothing to keep beside it."""

    def version(self) -> int:
        row = self._db.execute(
            "SELECT version FROM rollout_flags WHERE environment = %s", (self.environment,)
        ).fetchone()
        return int(row["version"]) if row else 0

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        """Write the flag and/or percentage; a flag-off is one statement that reads nothing first
        (what the row held comes back from it), so a flag-off is the first thing the database sees."""
        if enabled is not False or percent is not None:
            return super().set(enabled, percent, guard)
        with file_lock(self._lock_path):
            if guard is not None:
                guard()
            was = self._off()
        return {} if was is None else self._as_variables(bool(was["enabled"]), was["percent"])

    def _off(self) -> dict[str, Any] | None:
        """The row off (its percentage kept), NOTIFYed; returns what it held before (None: no row)."""
        import psycopg

        try:
            with self._db.transaction():
                row = self._db.execute(
                    "WITH old AS (SELECT enabled, percent FROM rollout_flags WHERE environment = %s FOR UPDATE) "
                    "INSERT INTO rollout_flags (environment, enabled, percent, version, updated_at) "
                    "VALUES (%s, false, 100, 1, %s) ON CONFLICT (environment) DO UPDATE SET enabled = false, "
                    "version = rollout_flags.version + 1, updated_at = EXCLUDED.updated_at "
                    "RETURNING (SELECT enabled FROM old) AS enabled, (SELECT percent FROM old) AS percent, "
                    "(SELECT count(*) FROM old) AS existed",
                    (self.environment, self.environment, time.time()),
                ).fetchone()
                self._db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.environment))
        except psycopg.Error as exc:
            raise FlagWriteError(
                f"flag write to {self.describe()} failed ({str(exc).strip()[:200]}); the flag may not have changed"
            ) from exc
        return row if row and row["existed"] else None

    def _write(self, enabled: bool, percent: int) -> None:
        import psycopg

        try:
            with self._db.transaction():
                self._db.execute(
                    "INSERT INTO rollout_flags (environment, enabled, percent, version, updated_at) "
                    "VALUES (%s, %s, %s, 1, %s) ON CONFLICT (environment) DO UPDATE SET enabled = EXCLUDED.enabled, "
                    "percent = EXCLUDED.percent, version = rollout_flags.version + 1, updated_at = EXCLUDED.updated_at",
                    (self.environment, enabled, percent, time.time()),
                )
                self._db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, self.environment))
        except psycopg.Error as exc:
            raise FlagWriteError(
                f"flag write to {self.describe()} failed ({str(exc).strip()[:200]}); the flag may not have changed"
            ) from exc

    def replicas(self) -> list[dict[str, Any]]:
        """The replicas of this environment that reported within :data:`REPLICA_TTL_S`."""
        return list(
            self._db.execute(
                "SELECT * FROM rollout_replicas WHERE environment = %s AND seen_at >= %s ORDER BY replica_id",
                (self.environment, time.time() - REPLICA_TTL_S),
            )
        )

    def close(self) -> None:
        self._db.close()


def open_backend(spec: PostgresFlag, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> PostgresFlags:
    """The environment's row in the flag database the playbook's ``database`` reference names."""
    return PostgresFlags(spec, env.name, state_dir, secret(spec.database or ""))


class PostgresBackend(FlagPlugin):
    """The ``postgres`` flag backend, as a plugin."""

    name = "postgres"
    config = PostgresFlag
    open = staticmethod(open_backend)
