"""The ``command`` flag backend: a platform's command line, run with ``{enabled}`` and ``{percent}``
filled in (never through a shell)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from rollout.flags.base import FlagWriteError, RecordedBackend
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec
from rollout.playbook.plugins import FlagPlugin
from rollout.util.yamlfile import FieldProblems


class CommandFlag(FlagSpec):
    """``backend: command``: run ``command`` with ``{enabled}`` and ``{percent}`` replaced; a
    non-zero exit is a failed write."""

    backend: Literal["command"] = "command"
    command: list[str] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> CommandFlag:
        if not self.command:
            raise FieldProblems([(("command",), "required for the command backend: [program, arg, ...]")])
        return self


class CommandFlags(RecordedBackend):
    """Run ``spec.command`` with ``{enabled}`` (true/false) and ``{percent}`` filled in.

    An argument may hold a ``${REFERENCE}`` (``--token ${DEPLOY_TOKEN}``): it is resolved only to
    run the command, through ``secret`` (which teaches the value to the redactor); what is shown,
    recorded and reported is the command as written."""

    spec: CommandFlag

    def __init__(self, spec: CommandFlag, env: str, state_dir: Path, secret: Callable[[str], str]) -> None:
        super().__init__(spec, env, state_dir)
        self._secret = secret

    def describe(self) -> str:
        return " ".join(self.spec.command or [])

    def _write(self, enabled: bool, percent: int) -> None:
        written = self.spec.command or []
        argv = [
            (self._secret(a) if "${" in a else a)
            .replace("{enabled}", "true" if enabled else "false")
            .replace("{percent}", str(percent))
            for a in written
        ]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.spec.timeout, check=False)
        except subprocess.TimeoutExpired as exc:  # its message repeats the whole argument list
            raise FlagWriteError(
                f"flag command {written[0]!r} did not finish within {self.spec.timeout:g}s; the "
                "flag may not have changed"
            ) from exc
        except OSError as exc:
            raise FlagWriteError(
                f"flag command {written[0]!r} could not run ({type(exc).__name__}: "
                f"{exc.strerror or exc}); the flag may not have changed"
            ) from exc
        if done.returncode != 0:
            raise FlagWriteError(
                f"flag command {written[0]!r} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-200:]}; the flag may not have changed"
            )

    def close(self) -> None:
        pass


def open_backend(spec: CommandFlag, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> CommandFlags:
    """The playbook's command; its ``${REFERENCE}`` arguments are resolved when it runs."""
    return CommandFlags(spec, env.name, state_dir, secret)


class CommandBackend(FlagPlugin):
    """The ``command`` flag backend, as a plugin."""

    name = "command"
    config = CommandFlag
    open = staticmethod(open_backend)
