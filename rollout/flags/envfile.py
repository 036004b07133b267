"""The ``envfile`` flag backend (the default): the service's env file, written atomically under a
short lock. Only the variables rollout manages are changed, in place; the user's own lines and
comments stay."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal

from rollout.flags.base import check_percent, file_lock, is_on
from rollout.playbook.builtin import vocabulary
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec
from rollout.playbook.plugins import FlagPlugin
from rollout.util.envfile import edit_env_file, read_env_file
from rollout.util.errors import ConfigError


class EnvfileFlag(FlagSpec):
    """``backend: envfile`` (the default): the variables ``variable`` and ``percent_variable`` in the
    environment's env file."""

    backend: Literal["envfile"] = "envfile"


HEADER = "Written by rollout. Changes here are read live by the service; rollout records every change."


class FlagStore:
    """Reads and writes one environment's flag, percentage and variables."""

    def __init__(
        self,
        env_file: Path,
        flag_variable: str | None = None,
        percent_variable: str | None = None,
    ) -> None:
        """``flag_variable`` and ``percent_variable`` default to the built-in target's."""
        self.env_file = Path(env_file)
        self.flag_variable = flag_variable or vocabulary().flag_variable
        self.percent_variable = percent_variable or vocabulary().percent_variable

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.env_file.with_name(self.env_file.name + ".lock"))

    def describe(self) -> str:
        return str(self.env_file)

    def close(self) -> None:
        """Nothing to release (the other backends hold a connection)."""

    def read(self) -> dict[str, str]:
        """The env file's variables; empty if it does not exist yet."""
        if not self.env_file.exists():
            return {}
        return read_env_file(self.env_file)

    def state(self) -> tuple[bool, int | None]:
        """(flag on?, percentage) as the service will read them."""
        values = self.read()
        enabled = is_on(values.get(self.flag_variable, "false"))
        raw = values.get(self.percent_variable)
        try:
            percent = int(raw) if raw not in (None, "") else None
        except ValueError:
            percent = None
        return enabled, percent

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        """Set ``values`` in the file, keeping every other line (the user's own variables and
        comments); returns what was there before."""
        with self._locked():
            if guard is not None:
                guard()
            before = self.read()
            changed = {k: v for k, v in values.items() if before.get(k) != v}
            if changed or not self.env_file.exists():
                edit_env_file(self.env_file, changed, HEADER)
            return before

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        """Change only the flag and/or the percentage; returns what was there before."""
        check_percent(self.percent_variable, percent)
        with self._locked():
            if guard is not None:
                guard()
            before = self.read()
            after = dict(before)
            if enabled is not None:
                after[self.flag_variable] = "true" if enabled else "false"
            if percent is not None:
                after[self.percent_variable] = str(percent)
            changed = {k: v for k, v in after.items() if before.get(k) != v}
            if changed:
                edit_env_file(self.env_file, changed, HEADER)
            return before


def open_backend(spec: EnvfileFlag, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> FlagStore:
    """The environment's env file (its ``env_file``), with the playbook's variable names."""
    if env.env_file is None:
        raise ConfigError(
            f"environment {env.name}: env_file is required by the envfile flag backend (or name "
            "another backend in the playbook's flag section)"
        )
    return FlagStore(env.env_file, spec.variable, spec.percent_variable)


class EnvfileBackend(FlagPlugin):
    """The ``envfile`` flag backend, as a plugin."""

    name = "envfile"
    config = EnvfileFlag
    open = staticmethod(open_backend)
