"""The stand-in flag backend of a kill whose real backend could not even be opened."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from rollout.flags import FlagBackend, FlagWriteError
from rollout.playbook.model import FlagSpec
from rollout.util.errors import described


class UnreachableFlags:
    """The flag backend of a kill that could not even be opened (its database down, its token
    missing): every write fails with why, so the one flag-off path records, reports and notifies
    the failure as it does any other."""

    env_file: Path | None = None

    def __init__(self, flag_variable: str, percent_variable: str, what: str, problem: str) -> None:
        self.flag_variable, self.percent_variable = flag_variable, percent_variable
        self._what, self._problem = what, problem

    def describe(self) -> str:
        return self._what

    def read(self) -> dict[str, str]:
        raise FlagWriteError(f"the {self._what} cannot be read: {self._problem}")

    def state(self) -> tuple[bool, int | None]:
        raise FlagWriteError(f"the {self._what} cannot be read: {self._problem}")

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        raise FlagWriteError(f"the {self._what} cannot be reached: {self._problem}; the flag may not have changed")

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        return self.set(guard=guard)

    def close(self) -> None:
        pass


def open_or_unreachable(open_backend: Callable[[], FlagBackend], spec: FlagSpec) -> FlagBackend:
    """The flag backend ``open_backend`` opens, or, when it cannot even be opened (its database down,
    its token missing, anything it raises), an :class:`UnreachableFlags` saying why: a rollback and
    an incident report go on without it."""
    try:
        return open_backend()
    except Exception as exc:  # noqa: BLE001 - the kill path never stops at its backend
        shown = described(exc)
        return UnreachableFlags(spec.variable, spec.percent_variable, f"{spec.backend} flag backend", shown)
