"""What every flag backend is: the :class:`FlagBackend` protocol, the lock every writer of one
environment's flag takes, and :class:`RecordedBackend`, the base of backends that cannot read
their own state back (they keep what they last wrote beside the state database).

Every write (a configure, a ramp step, a rollback) takes an exclusive ``flock`` for the few
milliseconds of read-modify-write, so no write is lost between two writers. A ramp step passes a
``guard`` that is checked *inside* the lock: a rollback that got there first makes the ramp's write
refuse, which is how a rollback always wins.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Protocol

from rollout.playbook.model import FlagSpec
from rollout.util.errors import ConfigError, RolloutError

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
    """What the engine needs of a flag backend (the env file, an HTTP endpoint, a command, a row)."""

    @property
    def flag_variable(self) -> str:
        """The name configure steps and reports use for the flag."""
        ...

    @property
    def percent_variable(self) -> str:
        """The name configure steps and reports use for the percentage."""
        ...

    @property
    def env_file(self) -> Path | None:
        """The env file it writes, when it is the ``envfile`` backend (it then takes every variable)."""
        ...

    def describe(self) -> str:
        """Where the flag is written, for people (never a secret)."""
        ...

    def read(self) -> dict[str, str]:
        """The managed variables as it holds them."""
        ...

    def state(self) -> tuple[bool, int | None]:
        """(flag on?, percentage) as it holds them."""
        ...

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        """Write the flag and/or percentage under the lock, after ``guard``; returns what was there."""
        ...

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        """A configure step's write; returns what was there."""
        ...

    def close(self) -> None:
        """Release what it holds (a connection)."""
        ...


class RecordedBackend:
    """A backend that cannot read its own state: the lock, the record of what was last written, and
    the variable-shaped views. A subclass writes (:meth:`_write`)."""

    env_file: Path | None = None
    #: its :meth:`read` is only what rollout last wrote (the target may report otherwise)
    record_only = True

    def __init__(self, spec: FlagSpec, env: str, state_dir: Path) -> None:
        self.spec = spec
        self.flag_variable, self.percent_variable = spec.variable, spec.percent_variable
        state_dir.mkdir(parents=True, exist_ok=True)
        self._lock_path = state_dir / f"flag-{env}.lock"
        self._record = state_dir / f"flag-{env}.json"

    def state(self) -> tuple[bool, int | None]:
        """What rollout last wrote: (flag on?, percentage); off and unknown before any write."""
        try:
            data = json.loads(self._record.read_text())
            return bool(data["enabled"]), data.get("percent")
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return False, None

    def read(self) -> dict[str, str]:
        return self._as_variables(*self.state())

    def _as_variables(self, enabled: bool, percent: int | None) -> dict[str, str]:
        values = {self.flag_variable: "true" if enabled else "false"}
        if percent is not None:
            values[self.percent_variable] = str(percent)
        return values

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        """Write the flag and/or percentage through the backend; returns what was there before."""
        check_percent(self.percent_variable, percent)
        with file_lock(self._lock_path):
            if guard is not None:
                guard()
            was_on, was_percent = self.state()
            new_on = was_on if enabled is None else enabled
            new_percent = was_percent if percent is None else percent
            self._write(new_on, 100 if new_percent is None else new_percent)
            self._remember(new_on, new_percent)
            return self._as_variables(was_on, was_percent)

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        """A configure step: the flag and percentage variables among ``values`` go to the backend;
        the service's other settings are its deployment's business, not this backend's."""
        return self.set(*self._flag_and_percent(values), guard)

    def _flag_and_percent(self, values: Mapping[str, str]) -> tuple[bool | None, int | None]:
        """The flag and the percentage a configure's ``values`` hold (None: not among them)."""
        enabled = values.get(self.flag_variable)
        raw = values.get(self.percent_variable)
        try:
            percent = None if raw in (None, "") else int(raw)
        except ValueError:
            raise ConfigError(f"{self.percent_variable}: must be a whole number from 0 to 100, got {raw!r}") from None
        return None if enabled is None else is_on(enabled), percent

    def _write(self, enabled: bool, percent: int) -> None:
        raise NotImplementedError

    def _remember(self, enabled: bool, percent: int | None) -> None:
        """Keep what was written, for :meth:`state` (a backend that can read its own row needs not)."""
        self._record.write_text(json.dumps({"enabled": enabled, "percent": percent}))
