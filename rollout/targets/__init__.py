"""What is being rolled out, seen from the engine: how it reports the flag it applied, and its health.

``embedded`` is the WhatsApp service shipped with rollout; ``http`` is any service (a health probe,
and a read-back of the flag: ``target.flag_state`` in the playbook, else the flag backend's
``read``); a fleet on the ``postgres`` flag backend is confirmed through its replicas. A new target
kind is one module here and one line in :data:`TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.checks.service_api import ServiceClient
from rollout.flags import FlagBackend
from rollout.flags.postgres import PostgresFlags
from rollout.playbook.model import Playbook
from rollout.targets.base import Target, read_flag, reported_values, wait_service_applied
from rollout.targets.embedded import EmbeddedTarget
from rollout.targets.fleet import ReplicasTarget
from rollout.targets.http import HttpTarget

__all__ = [
    "TARGETS",
    "EmbeddedTarget",
    "HttpTarget",
    "ReplicasTarget",
    "Target",
    "make_target",
    "read_flag",
    "reported_values",
    "wait_service_applied",
]


def _embedded(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> Target:
    return EmbeddedTarget(service)


def _http(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> Target:
    read = playbook.target.flag_state or playbook.flag.read
    # a read-back through the flag backend's own endpoint carries the backend's token
    headers = getattr(flags, "headers", None) if playbook.target.flag_state is None else None
    return HttpTarget(service, playbook.target.health, read, headers)


#: ``target.kind`` -> how to open it
TARGETS: dict[str, Callable[[Playbook, ServiceClient, FlagBackend], Target]] = {
    "embedded": _embedded,
    "http": _http,
}


def make_target(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> Target:
    """The playbook's target for one environment's ``service``. A fleet on the postgres flag backend
    is confirmed when every live replica applied the change, whatever the target's kind."""
    if isinstance(flags, PostgresFlags):
        return ReplicasTarget(flags, playbook.target.health if playbook.target.kind == "http" else None)
    return TARGETS[playbook.target.kind](playbook, service, flags)
