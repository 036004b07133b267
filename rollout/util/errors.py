"""The one exception tree of rollout.

Every error a user can cause or meet is a :class:`RolloutError`. The CLI catches this one type,
prints ``str(error)`` on one line and exits with ``error.exit_code``; nothing else reaches the user.

Exit codes (documented in the README):
    0  done or advanced
    1  a gate failed and the rollout was rolled back
    2  usage or configuration error
    3  held, or waiting for approval
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_USAGE = 2
EXIT_HELD = 3


class RolloutError(Exception):
    """Base of every error rollout reports to a user."""

    exit_code = EXIT_USAGE


class ConfigError(RolloutError):
    """Invalid configuration: a variable, an env file, a settings value. Names the culprit."""


class PlaybookError(RolloutError):
    """A playbook that cannot be loaded or cannot work. Names the file, line and field path."""


class StateError(RolloutError):
    """The state store refuses an operation (locked by another writer, unknown environment)."""


class GateFailed(RolloutError):
    """A gate failed; the flag was turned off."""

    exit_code = EXIT_ROLLED_BACK


class Held(RolloutError):
    """The rollout is held (gate on hold, too few samples) or waits for a person's approval."""

    exit_code = EXIT_HELD


class MeasurementError(RolloutError):
    """A service, target or metric provider could not be asked (down, timeout, nonsense answer)."""


def described(exc: BaseException) -> str:
    """``exc`` in one line for people: rollout's own errors as they say, anything else with its type."""
    return str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
