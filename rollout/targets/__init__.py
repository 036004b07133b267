"""What is being rolled out, seen from the engine: how it reports the flag it applied, and its health.

``embedded`` is the WhatsApp service shipped with rollout; ``http`` is any service (a health probe,
and a read-back of the flag: ``target.flag_state`` in the playbook, else the flag backend's
``read``); a fleet on the ``postgres`` flag backend is confirmed through its replicas. Each module
holds its config model (a :class:`~rollout.playbook.model.TargetSpec` with ``kind: Literal[NAME]``),
the target, and its :class:`~rollout.playbook.plugins.TargetPlugin`: a new target kind is one module
here and one line in :data:`rollout.playbook.plugins.TARGETS` (or a ``rollout.targets`` entry point).
"""

from __future__ import annotations

from rollout.checks.service_api import ServiceClient
from rollout.flags import FlagBackend
from rollout.flags.postgres import PostgresFlags
from rollout.playbook.model import Playbook
from rollout.playbook.plugins import TARGETS
from rollout.targets.base import Target, read_flag, reported_values, wait_service_applied
from rollout.targets.embedded import EmbeddedTarget
from rollout.targets.fleet import ReplicasTarget
from rollout.targets.http import HttpTarget

__all__ = [
    "EmbeddedTarget",
    "HttpTarget",
    "ReplicasTarget",
    "Target",
    "make_target",
    "read_flag",
    "reported_values",
    "wait_service_applied",
]


def make_target(playbook: Playbook, service: ServiceClient, flags: FlagBackend) -> Target:
    """The playbook's target for one environment's ``service``. A fleet on the postgres flag backend
    is confirmed when every live replica applied the change, whatever the target's kind."""
    if isinstance(flags, PostgresFlags):
        return ReplicasTarget(flags, playbook.target.health if playbook.target.kind == "http" else None)
    return TARGETS.get(playbook.target.kind).open(playbook, service, flags)
