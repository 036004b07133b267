"""Flag backends: where a rollout's flag and percentage are written, one module per backend.

Each module holds its backend's config model (a :class:`~rollout.playbook.model.FlagSpec` with
``backend: Literal[NAME]``), the backend, and its :class:`~rollout.playbook.plugins.FlagPlugin`; the
registry is :data:`rollout.playbook.plugins.FLAGS`. A new backend is one module here and one line
there, or a package of its own with a ``rollout.flags`` entry point (docs/plugins.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rollout.flags.base import FlagBackend, FlagWriteError, check_percent, file_lock, is_on
from rollout.flags.envfile import FlagStore
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec
from rollout.playbook.plugins import FLAGS

__all__ = [
    "FlagBackend",
    "FlagStore",
    "FlagWriteError",
    "check_percent",
    "file_lock",
    "is_on",
    "make_flags",
]


def make_flags(spec: FlagSpec, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> FlagBackend:
    """The flag backend ``spec`` names for ``env``; ``secret`` resolves a ``${REFERENCE}`` (and
    teaches its value to the redactor)."""
    return FLAGS.get(spec.backend).open(spec, env, state_dir, secret)
