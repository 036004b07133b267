"""The flag hint: after the engine's own flag-off write (never before it: nothing new waits in front
of a flag-off), each replica of the service it knows is asked to re-read its flag now (the
target's ``hint_request``: the embedded service names one). A service that polls its flag service (Unleash: a flag-off
0.7-1.5 s away at a 1 s poll) then obeys in milliseconds. The hint carries no value and nobody
waits for it: a hint that is lost costs one poll, and polling stays the fallback.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx

from rollout.checks.client import ServiceClient
from rollout.flags import FlagBackend
from rollout.flags.unleash import UnleashFlags
from rollout.playbook.environments import Environment, Resolved
from rollout.util.errors import MeasurementError

#: how long one replica has to take a hint in (it answers at once: the re-read runs after)
HINT_TIMEOUT_S = 1.0


def replica_urls(env: Environment) -> list[str]:
    """Each replica of ``env``'s service: its ``replicas``, else its one ``service_url``."""
    return list(env.replicas) or [env.service_url]


def hint_token(resolved: Resolved, target: Any) -> str:
    """The token a hint is sent with: the environment's value of the target's ``hint_token_variable``
    (the embedded service's ``ROLLOUT_HINT_TOKEN``), else its admin token."""
    variable = getattr(target, "hint_token_variable", None)
    return (resolved.values.get(variable) if variable else None) or resolved.admin_token


def wants_hints(flags: FlagBackend, target: object) -> bool:
    """Do hints help here? A target that takes them following a flag service it polls (Unleash); the
    env file and the fleet's row reach it live (a re-read of the file, LISTEN/NOTIFY)."""
    return isinstance(flags, UnleashFlags) and getattr(target, "hint_request", None) is not None


def request_of(target: Any) -> tuple[str, str]:
    """The hint ``target`` takes (method, path); only asked of one that :func:`wants_hints`."""
    return tuple(target.hint_request)


def send(urls: list[str], token: str, request: tuple[str, str]) -> list[threading.Thread]:
    """The hint (``request``: method and path) to each of ``urls``, each from a thread of its own (a replica that hangs delays no
    other, and nobody must wait: the threads are returned for a caller that wants to)."""
    # plain HTTP needs no certificates: a client's default TLS context (the CA bundle read) costs tens
    # of ms of CPU, most of a hint's time on a busy machine; the replicas on http:// share one transport
    plain = httpx.HTTPTransport(verify=False)

    def one(url: str) -> None:
        client = ServiceClient(url, timeout=HINT_TIMEOUT_S, transport=plain if url.startswith("http://") else None)
        try:
            client.json(*request, headers={"Authorization": f"Bearer {token}"})
        except MeasurementError:
            pass  # the replica's poll is the fallback
        finally:
            if not url.startswith("http://"):
                client.close()

    threads = [threading.Thread(target=one, args=(url,), name="flag-hint", daemon=True) for url in urls]
    for thread in threads:
        thread.start()

    def close_when_done() -> None:
        for thread in threads:
            thread.join()
        plain.close()

    threading.Thread(target=close_when_done, name="flag-hint-close", daemon=True).start()
    return threads


def after_flag_off(flags: FlagBackend, target: object, resolved: Resolved) -> list[threading.Thread]:
    """Send the hint to every replica of ``resolved``'s environment if it helps and a token is at hand."""
    token = hint_token(resolved, target)
    if not token or not wants_hints(flags, target):
        return []
    return send(replica_urls(resolved.env), token, request_of(target))
