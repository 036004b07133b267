"""A fleet of replicas on one flag row: a change is confirmed when every live replica applied it."""

from __future__ import annotations

from typing import Any

from rollout.flags.postgres import PostgresFlags
from rollout.util.errors import MeasurementError
from rollout.util.flagrow import REPLICA_TTL_S


class ReplicasTarget:
    """Confirms a flag change only when every live replica reports the version written; what else
    the fleet's target kind offers (its checks, load, report section) is ``kind``'s."""

    can_confirm = True
    #: one replica's cohort counts are not the fleet's: no sample ratio check
    counts_cohorts = False

    def __init__(self, flags: PostgresFlags, health: Any = None, kind: Any = None) -> None:
        self.flags, self.health, self._kind = flags, health, kind

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or self.__dict__.get("_kind") is None:
            raise AttributeError(name)
        return getattr(self._kind, name)

    def applied(self) -> tuple[bool | None, int | None, dict[str, Any]]:
        version = self.flags.version()
        live = self.flags.replicas()
        if not live:
            raise MeasurementError(f"no replica of {self.flags.environment} reported in the last {REPLICA_TTL_S:g}s")
        behind = [r for r in live if (r["applied_version"] or 0) < version]
        if behind:
            raise MeasurementError(
                f"{len(live) - len(behind)} of {len(live)} replicas applied flag version {version}; "
                + ", ".join(f"{r['replica_id']} is at {r['applied_version']}" for r in behind)
            )
        enabled, percent = self.flags.state()
        return enabled, percent, {"replicas": [r["replica_id"] for r in live], "version": version}
