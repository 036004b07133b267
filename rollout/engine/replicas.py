"""Each replica's own report of the flag it applied, read all at once: what ``rollout drill`` times a
flag change with, replica by replica.

- a fleet on the ``postgres`` backend: each live replica's row (the flag version it applied);
- a target that can be opened on each replica (its ``on``: the shipped service): each replica's own
  report, by URL (the environment's ``replicas``, else its ``service_url``), read in parallel;
- any other target: its one read-back (``target.flag_state`` or ``flag.read``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

from rollout.checks.client import ServiceClient
from rollout.engine.context import RunContext
from rollout.engine.hints import replica_urls
from rollout.flags.postgres import PostgresFlags
from rollout.util.clock import Clock
from rollout.util.errors import ConfigError, MeasurementError, StateError
from rollout.util.flagrow import REPLICA_TTL_S

#: how long a replica has to answer one read
READ_TIMEOUT_S = 1.0


class Reading(NamedTuple):
    """What one replica reported: its flag and percentage (None: it could not say), in words, and when
    (the clock's monotonic time of the answer)."""

    flag: bool | None
    percent: int | None
    said: str
    at: float


class Replicas(Protocol):
    """The replicas of one environment, named; :meth:`read` asks the ones named at once."""

    names: list[str]

    def read(self, names: list[str]) -> dict[str, Reading]: ...

    def close(self) -> None: ...


def _said(flag: Any, percent: Any) -> str:
    if flag is None:
        return "no flag reported"
    return "flag off" if not flag else f"flag on for {percent}%" if percent is not None else "flag on"


class ServiceReplicas:
    """Each replica of the service, by URL: what the target opened on it (``on``) says it applied."""

    def __init__(self, urls: list[str], clock: Clock, on: Callable[[ServiceClient], Any]) -> None:
        self.names, self._clock = list(urls), clock
        self._clients = {url: ServiceClient(url, timeout=READ_TIMEOUT_S) for url in urls}
        self._targets = {url: on(client) for url, client in self._clients.items()}
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(urls)), thread_name_prefix="replica-read")

    def _one(self, name: str) -> tuple[str, Reading]:
        try:
            flag, percent, _ = self._targets[name].applied()
        except MeasurementError as exc:
            return name, Reading(None, None, str(exc), self._clock.monotonic())
        return name, Reading(flag, percent, _said(flag, percent), self._clock.monotonic())

    def read(self, names: list[str]) -> dict[str, Reading]:
        return dict(self._pool.map(self._one, names))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for client in self._clients.values():
            client.close()


class FleetReplicas:
    """A fleet on the postgres backend: each replica that reported within the TTL when the drill
    began; its row says the flag version it applied (a replica behind the version said nothing yet)."""

    def __init__(self, flags: PostgresFlags, clock: Clock) -> None:
        self._flags, self._clock = flags, clock
        self.names = [row["replica_id"] for row in flags.replicas()]
        if not self.names:
            raise StateError(
                f"no replica of {flags.environment} reported in the last {REPLICA_TTL_S:g}s: nothing to time"
            )

    def read(self, names: list[str]) -> dict[str, Reading]:
        version = self._flags.version()
        rows = {row["replica_id"]: row for row in self._flags.replicas()}
        now = self._clock.monotonic()
        found = {}
        for name in names:
            row = rows.get(name)
            if row is None:
                found[name] = Reading(None, None, f"stopped reporting (none in {REPLICA_TTL_S:g}s)", now)
            elif (row["applied_version"] or 0) < version:
                found[name] = Reading(None, None, f"at flag version {row['applied_version']} of {version}", now)
            else:
                found[name] = Reading(row["enabled"], row["percent"], _said(row["enabled"], row["percent"]), now)
        return found

    def close(self) -> None:
        """The backend's connection is the run's."""


class TargetReplica:
    """Any other target: the one read-back it offers, as one replica named ``service``."""

    def __init__(self, applied: Callable[[], tuple[bool | None, int | None, dict[str, Any]]], clock: Clock) -> None:
        self.names = ["service"]
        self._applied, self._clock = applied, clock

    def read(self, names: list[str]) -> dict[str, Reading]:
        try:
            flag, percent, _ = self._applied()
            return {"service": Reading(flag, percent, _said(flag, percent), self._clock.monotonic())}
        except MeasurementError as exc:
            return {"service": Reading(None, None, str(exc), self._clock.monotonic())}

    def close(self) -> None:
        """Nothing of its own."""


def replicas_of(ctx: RunContext) -> Replicas:
    """The replicas of ``ctx``'s environment, as the module docstring says; a ConfigError when the
    target cannot report its flag at all."""
    if isinstance(ctx.flags, PostgresFlags):
        return FleetReplicas(ctx.flags, ctx.clock)
    on = getattr(ctx.target, "on", None)
    if on is not None:
        return ServiceReplicas(replica_urls(ctx.resolved.env), ctx.clock, on)
    if ctx.target.can_confirm:
        return TargetReplica(ctx.target.applied, ctx.clock)
    raise ConfigError(
        f"{ctx.playbook_path}: the target has no way to report its flag (set target.flag_state or flag.read): "
        "a drill cannot time it"
    )


def obeys(reading: Reading, flag: bool, percent: int | None, exact: bool = False) -> bool:
    """Does ``reading`` show ``flag`` (and ``percent``, when both are known)? Off is off at any
    percentage, unless ``exact`` (a restore: the flag as it was found, percentage included)."""
    if reading.flag is None or bool(reading.flag) != flag:
        return False
    return (not flag and not exact) or percent is None or reading.percent is None or reading.percent == percent


def time_until(
    replicas: Replicas,
    flag: bool,
    percent: int | None,
    since: float,
    within: float,
    clock: Clock,
    gap: float = 0.005,
    exact: bool = False,
) -> tuple[dict[str, float | None], dict[str, str]]:
    """How long after ``since`` (the clock's monotonic time) each replica first reported ``flag``/
    ``percent`` (:func:`obeys`, ``exact`` or not), in ms (None: not within ``within`` s), and what
    each that did not last said. Every replica still waited for is read at once, every ``gap`` s."""
    pending, took, said = list(replicas.names), {}, {}
    deadline = since + within
    while pending:
        for name, reading in replicas.read(pending).items():
            if obeys(reading, flag, percent, exact):
                took[name] = round(max(0.0, reading.at - since) * 1000, 1)
                pending.remove(name)
            else:
                said[name] = reading.said
        if not pending or clock.monotonic() >= deadline:
            break
        clock.sleep(gap)
    return {name: took.get(name) for name in replicas.names}, {name: said[name] for name in pending}
