"""Flag backends: where a rollout's flag and percentage are written, one module per backend.

Each module has an ``open_backend(spec, env, state_dir, secret)``; :data:`BACKENDS` maps the
playbook's ``flag.backend`` to it. A new backend is one module here and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rollout.flags import command, envfile, http, postgres, unleash
from rollout.flags.base import FlagBackend, FlagWriteError, check_percent, file_lock, is_on
from rollout.flags.envfile import FlagStore
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec

__all__ = [
    "BACKENDS",
    "FlagBackend",
    "FlagStore",
    "FlagWriteError",
    "check_percent",
    "file_lock",
    "is_on",
    "make_flags",
]

Opener = Callable[[FlagSpec, Environment, Path, Callable[[str], str]], FlagBackend]

#: ``flag.backend`` -> how to open it
BACKENDS: dict[str, Opener] = {
    "envfile": envfile.open_backend,
    "http": http.open_backend,
    "command": command.open_backend,
    "postgres": postgres.open_backend,
    "unleash": unleash.open_backend,
}


def make_flags(spec: FlagSpec, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> FlagBackend:
    """The flag backend ``spec`` names for ``env``; ``secret`` resolves a ``${REFERENCE}`` (and
    teaches its value to the redactor)."""
    return BACKENDS[spec.backend](spec, env, state_dir, secret)
