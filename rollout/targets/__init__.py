"""What is being rolled out, seen from the engine: how it reports the flag it applied, its health,
and what it brings of its own (checks, scenarios, a load, metric providers, a report section).

``embedded`` is the service shipped with rollout (everything of it in :mod:`rollout.targets.embedded`);
``http`` is any service (a health probe, and a read-back of the flag: ``target.flag_state`` in the
playbook, else the flag backend's ``read``); a fleet on the ``postgres`` flag backend is confirmed
through its replicas. Each kind holds its config model (a :class:`~rollout.playbook.model.TargetSpec`
with ``kind: Literal[NAME]``), the target, and its :class:`~rollout.playbook.plugins.TargetPlugin`: a
new target kind is one module (or folder) here and one line in :data:`rollout.playbook.plugins.TARGETS`
(or a ``rollout.targets`` entry point).
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.checks.client import ServiceClient
from rollout.flags import FlagBackend
from rollout.flags.postgres import PostgresFlags
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.environments import Resolved
from rollout.playbook.model import Playbook
from rollout.playbook.plugins import TARGETS
from rollout.providers import Provider
from rollout.targets.base import Target, read_flag, reported_values, wait_service_applied
from rollout.targets.embedded.provider import EmbeddedProvider
from rollout.targets.fleet import ReplicasTarget
from rollout.targets.http import HttpTarget

__all__ = [
    "OWN_PROVIDERS",
    "HttpTarget",
    "ReplicasTarget",
    "Target",
    "make_target",
    "own_providers",
    "read_flag",
    "reported_values",
    "wait_service_applied",
]

#: the metric providers a target package brings, by the name a gate gives as its ``provider``,
#: opened on the environment's service (the embedded service's metrics endpoint is always there)
OWN_PROVIDERS: dict[str, Callable[[ServiceClient], Provider]] = {
    EMBEDDED: EmbeddedProvider,
}


def make_target(
    playbook: Playbook, service: ServiceClient, flags: FlagBackend, resolved: Resolved | None = None
) -> Target:
    """The playbook's target for one environment's ``service``; ``resolved`` (the environment's
    values) is handed to a target that uses them (``use_environment``: the embedded service's
    sandbox). A fleet on the postgres flag backend is confirmed when every live replica applied the
    change, whatever the target's kind; what else the target offers is its kind's."""
    own = TARGETS.get(playbook.target.kind).open(playbook, service, flags)
    use = getattr(own, "use_environment", None)
    if resolved is not None and use is not None:
        use(resolved)
    if isinstance(flags, PostgresFlags):
        return ReplicasTarget(flags, playbook.target.health if playbook.target.kind == "http" else None, own)
    return own


def own_providers(service: ServiceClient) -> dict[str, Provider]:
    """The providers every target package brings, opened on ``service``."""
    return {name: open_(service) for name, open_ in OWN_PROVIDERS.items()}
