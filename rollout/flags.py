"""The flag store: the service's env file, written atomically under a short lock.

Only the variables rollout manages are changed, in place; the user's own lines and comments stay.

Every write (a configure, a ramp step, a rollback) takes an exclusive ``flock`` on a sidecar lock
file for the few milliseconds of read-modify-write, so no write is lost between two writers. A
ramp step passes a ``guard`` that is checked *inside* the lock: a rollback that got there first
makes the ramp's write refuse, which is how a rollback always wins.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rollout.envfile import edit_env_file, read_env_file
from rollout.errors import ConfigError, RolloutError

if TYPE_CHECKING:
    from rollout.environments import Environment
    from rollout.playbook.model import FlagSpec

HEADER = "Written by rollout. Changes here are read live by the service; rollout records every change."
_ON_WORDS = ("true", "1", "yes", "on")


class FlagWriteError(RolloutError):
    """The backend refused or failed a flag write: the flag may not be where rollout wanted it."""

    exit_code = 1


def is_on(raw: object) -> bool:
    """Does a flag value (``true``, ``1``, ``yes``, ``on``, any case, or a bool) mean on?"""
    return raw if isinstance(raw, bool) else str(raw).strip().lower() in _ON_WORDS


def check_percent(name: str, percent: int | None) -> None:
    """Refuse a percentage outside 0-100 before any backend writes it."""
    if percent is not None and not 0 <= percent <= 100:
        raise ConfigError(f"{name}: must be 0-100, got {percent}")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created if missing) for the few milliseconds of a flag
    write: every writer of one environment's flag, whatever its backend, takes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class FlagBackend(Protocol):
    """What the engine needs of a flag backend (the env file, an HTTP endpoint, a command)."""

    flag_variable: str
    percent_variable: str
    env_file: Path | None

    def describe(self) -> str: ...
    def read(self) -> dict[str, str]: ...
    def state(self) -> tuple[bool, int | None]: ...
    def set(self, enabled: bool | None = None, percent: int | None = None,
            guard: Callable[[], None] | None = None) -> dict[str, str]: ...
    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]: ...
    def close(self) -> None: ...


class FlagStore:
    """Reads and writes one environment's flag, percentage and variables."""

    def __init__(self, env_file: Path, flag_variable: str = "WHATSAPP_NOTIFICATIONS_ENABLED",
                 percent_variable: str = "WHATSAPP_ROLLOUT_PERCENT") -> None:
        self.env_file = Path(env_file)
        self.flag_variable = flag_variable
        self.percent_variable = percent_variable

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

    def set(self, enabled: bool | None = None, percent: int | None = None,
            guard: Callable[[], None] | None = None) -> dict[str, str]:
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


def make_flags(spec: FlagSpec, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> FlagBackend:
    """The flag backend ``spec`` names for ``env``: the env file (default), an HTTP endpoint, or a
    command. ``secret`` resolves the backend's token reference."""
    from rollout.flagbackends import CommandFlags, HttpFlags

    if spec.backend == "http":
        return HttpFlags(spec, env.name, state_dir, env.service_url, secret(spec.token) if spec.token else None)
    if spec.backend == "command":
        return CommandFlags(spec, env.name, state_dir, secret)
    if spec.backend == "postgres":
        from rollout.flagdb import PostgresFlags

        return PostgresFlags(spec, env.name, state_dir, secret(spec.database or ""))
    if env.env_file is None:
        raise ConfigError(f"environment {env.name}: env_file is required by the envfile flag backend (or name "
                          "another backend in the playbook's flag section)")
    return FlagStore(env.env_file, spec.variable, spec.percent_variable)
