"""The one exception tree of rollout.

Every error a user can cause or meet is a :class:`RolloutError`. The CLI catches this one type,
prints ``str(error)`` on one line and exits with ``error.exit_code``; nothing else reaches the user.

The exit codes are :class:`rollout.util.outcomes.ExitCode` (documented in docs/cli.md); the ``EXIT_*`` names
below are its members under their older names.
"""

from __future__ import annotations

from rollout.util.outcomes import ExitCode

EXIT_OK = ExitCode.OK
EXIT_ROLLED_BACK = ExitCode.FAILED
EXIT_USAGE = ExitCode.USAGE
EXIT_HELD = ExitCode.HELD


class RolloutError(Exception):
    """Base of every error rollout reports to a user."""

    exit_code: int = EXIT_USAGE


class ConfigError(RolloutError):
    """Invalid configuration: a variable, an env file, a settings value. Names the culprit."""


class PlaybookError(RolloutError):
    """A playbook that cannot be loaded or cannot work. Names the file, line and field path."""


class StateError(RolloutError):
    """The state store refuses an operation (locked by another writer, unknown environment)."""


class MeasurementError(RolloutError):
    """A service, target or metric provider could not be asked (down, timeout, nonsense answer)."""


def described(exc: BaseException) -> str:
    """``exc`` in one line for people: rollout's own errors as they say, anything else with its type."""
    return str(exc) if isinstance(exc, RolloutError) else f"{type(exc).__name__}: {exc}"
