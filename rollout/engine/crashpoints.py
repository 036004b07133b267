"""A test-only hook: die like ``kill -9`` at a named point of the engine.

``ROLLOUT_CRASH_AT=ramp.after_write@2`` makes the second pass through ``crash_point("ramp.after_write")``
end the process at once (``ramp.after_write:50`` the pass tagged ``50``) (``os._exit``: no ``finally``, no lock released, no transaction committed),
so a test can show the audit and ``advance`` after a crash at every point of a ramp. Unset (always,
outside tests), a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
from collections import Counter

#: the variable naming the point (and optionally which pass through it, ``@N``) to die at
VARIABLE = "ROLLOUT_CRASH_AT"
#: the exit status of a process killed by SIGKILL, as a shell reports it
EXIT_CRASHED = 137

_passes: Counter[str] = Counter()


def crash_point(name: str, tag: object = None) -> None:
    """End the process here if ``ROLLOUT_CRASH_AT`` names this point (or this point with ``tag``) and pass."""
    wanted = os.environ.get(VARIABLE)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point not in (name, f"{name}:{tag}"):
        return
    _passes[name] += 1
    if _passes[name] == int(nth or 1):
        os._exit(EXIT_CRASHED)
