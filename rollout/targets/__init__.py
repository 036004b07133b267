"""What is being rolled out, seen from the engine: how it reports the flag it applied, its health,
and what it brings of its own (checks, scenarios, a load, metric providers, a report section).

``embedded`` is the service shipped with rollout (everything of it in :mod:`rollout.targets.embedded`);
``http`` is any service (a health probe, and a read-back of the flag: ``target.flag_state`` in the
playbook, else the flag backend's ``read``); a fleet on the ``postgres`` flag backend is confirmed
through its replicas. A new target kind is one module here and one line in :data:`TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable

from rollout.checks.client import ServiceClient
from rollout.flags import FlagBackend
from rollout.flags.postgres import PostgresFlags
from rollout.playbook.builtin import EMBEDDED
from rollout.playbook.environments import Resolved
from rollout.playbook.model import Playbook
from rollout.providers import Provider
from rollout.targets.base import Target, read_flag, reported_values, wait_service_applied
from rollout.targets.embedded import EmbeddedTarget
from rollout.targets.embedded.provider import EmbeddedProvider
from rollout.targets.fleet import ReplicasTarget
from rollout.targets.http import HttpTarget

__all__ = [
    "PROVIDERS",
    "TARGETS",
    "HttpTarget",
    "ReplicasTarget",
    "Target",
    "make_target",
    "own_providers",
    "read_flag",
    "reported_values",
    "wait_service_applied",
]


def _embedded(playbook: Playbook, service: ServiceClient, flags: FlagBackend, resolved: Resolved | None) -> Target:
    if resolved is None:
        return EmbeddedTarget(service)
    return EmbeddedTarget(service, resolved.env.sandbox_url, resolved.sandbox_token)


def _http(playbook: Playbook, service: ServiceClient, flags: FlagBackend, resolved: Resolved | None) -> Target:
    read = playbook.target.flag_state or playbook.flag.read
    # a read-back through the flag backend's own endpoint carries the backend's token
    headers = getattr(flags, "headers", None) if playbook.target.flag_state is None else None
    return HttpTarget(service, playbook.target.health, read, headers)


#: ``target.kind`` -> how to open it
TARGETS: dict[str, Callable[[Playbook, ServiceClient, FlagBackend, Resolved | None], Target]] = {
    "embedded": _embedded,
    "http": _http,
}

#: the metric providers a target package brings, by the name a gate gives as its ``provider``,
#: opened on the environment's service
PROVIDERS: dict[str, Callable[[ServiceClient], Provider]] = {
    EMBEDDED: EmbeddedProvider,
}


def make_target(
    playbook: Playbook, service: ServiceClient, flags: FlagBackend, resolved: Resolved | None = None
) -> Target:
    """The playbook's target for one environment's ``service`` (``resolved``: its values, for what
    the target needs of them, such as the embedded service's sandbox). A fleet on the postgres flag
    backend is confirmed when every live replica applied the change, whatever the target's kind;
    what else the target offers is its kind's."""
    own = TARGETS[playbook.target.kind](playbook, service, flags, resolved)
    if isinstance(flags, PostgresFlags):
        return ReplicasTarget(flags, playbook.target.health if playbook.target.kind == "http" else None, own)
    return own


def own_providers(service: ServiceClient) -> dict[str, Provider]:
    """The providers every target package brings, opened on ``service``."""
    return {name: open_(service) for name, open_ in PROVIDERS.items()}
