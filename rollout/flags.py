"""The flag store: the service's env file, written atomically under a short lock.

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

from rollout.envfile import read_env_file, write_env_file
from rollout.errors import ConfigError

HEADER = "Written by rollout. Changes here are read live by the service; rollout records every change."


class FlagStore:
    """Reads and writes one environment's flag, percentage and variables."""

    def __init__(self, env_file: Path, flag_variable: str = "WHATSAPP_NOTIFICATIONS_ENABLED",
                 percent_variable: str = "WHATSAPP_ROLLOUT_PERCENT") -> None:
        self.env_file = Path(env_file)
        self.flag_variable = flag_variable
        self.percent_variable = percent_variable

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.env_file.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.env_file.with_name(self.env_file.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict[str, str]:
        """The env file's variables; empty if it does not exist yet."""
        if not self.env_file.exists():
            return {}
        return read_env_file(self.env_file)

    def state(self) -> tuple[bool, int | None]:
        """(flag on?, percentage) as the service will read them."""
        values = self.read()
        enabled = values.get(self.flag_variable, "false").strip().lower() in ("true", "1", "yes", "on")
        raw = values.get(self.percent_variable)
        try:
            percent = int(raw) if raw not in (None, "") else None
        except ValueError:
            percent = None
        return enabled, percent

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        """Write ``values`` as the whole file; returns what was there before."""
        with self._locked():
            if guard is not None:
                guard()
            before = self.read()
            write_env_file(self.env_file, values, HEADER)
            return before

    def set(self, enabled: bool | None = None, percent: int | None = None,
            guard: Callable[[], None] | None = None) -> dict[str, str]:
        """Change only the flag and/or the percentage; returns what was there before."""
        if percent is not None and not 0 <= percent <= 100:
            raise ConfigError(f"{self.percent_variable}: must be 0-100, got {percent}")
        with self._locked():
            if guard is not None:
                guard()
            before = self.read()
            after = dict(before)
            if enabled is not None:
                after[self.flag_variable] = "true" if enabled else "false"
            if percent is not None:
                after[self.percent_variable] = str(percent)
            if after != before:
                write_env_file(self.env_file, after, HEADER)
            return before
