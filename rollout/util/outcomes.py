"""The names of how things end: the CLI's exit codes and an environment's status.

Both are enums of the plain type they stand for (as pytest's ``ExitCode``): an :class:`ExitCode` is an ``int``
and a :class:`Status` a ``str``, so comparisons with literals, ``sys.exit``, SQLite/PostgreSQL rows and
``--json`` output (``json.dumps(Status.HELD) == '"held"'``) are what they were with bare literals.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """The process exit codes of ``rollout`` (documented in docs/cli.md; never renumber one)."""

    #: done, or advanced as far as it may
    OK = 0
    #: a check or gate failed (the flag turned off by ``advance``/``watch``: rolled back)
    FAILED = 1
    #: usage or configuration error (nothing written)
    USAGE = 2
    #: held, or waiting for approval
    HELD = 3
    #: an error rollout did not expect (a bug): one line, no traceback
    INTERNAL = 70
    #: stopped by Ctrl-C or a signal
    INTERRUPTED = 130


class Status(StrEnum):
    """Where an environment's rollout stands (``EnvState.status``)."""

    IDLE = "idle"
    RUNNING = "running"
    HELD = "held"
    AWAITING_APPROVAL = "awaiting_approval"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"
    #: an advance was stopped by Ctrl-C or a signal
    INTERRUPTED = "interrupted"
