"""Flag backends other than the env file: a team's own admin endpoint (``http``) or a platform's
command line (``command``).

They present the same face as :class:`~rollout.flags.FlagStore` (``set``, ``state``, ``read``,
``replace``), so the kill switch, ramps and configure steps use them unchanged. A write and its
guard run under a short local file lock, as with the env file, so a rollback still always wins
against a ramp on the same machine. What rollout last wrote is kept beside the state database; what
the target *applied* is read back by the target (see :mod:`rollout.targets`).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from rollout.errors import ConfigError
from rollout.flags import FlagWriteError, check_percent, file_lock, is_on
from rollout.playbook.model import FlagSpec

__all__ = ["CommandFlags", "FlagWriteError", "HttpFlags", "render_body"]


def render_body(template: Any, enabled: bool, percent: int) -> Any:
    """``template`` with ``"$enabled"`` and ``"$percent"`` as JSON values (inside longer strings, as text)."""
    if isinstance(template, dict):
        return {k: render_body(v, enabled, percent) for k, v in template.items()}
    if isinstance(template, list):
        return [render_body(v, enabled, percent) for v in template]
    if template == "$enabled":
        return enabled
    if template == "$percent":
        return percent
    if isinstance(template, str):
        return template.replace("$enabled", "true" if enabled else "false").replace("$percent", str(percent))
    return template


class _BackendBase:
    """The lock, the record of what was last written, and the variable-shaped views."""

    env_file: Path | None = None

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

    def set(self, enabled: bool | None = None, percent: int | None = None,
            guard: Callable[[], None] | None = None) -> dict[str, str]:
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
        enabled = values.get(self.flag_variable)
        raw = values.get(self.percent_variable)
        try:
            percent = None if raw in (None, "") else int(raw)
        except ValueError:
            raise ConfigError(f"{self.percent_variable}: must be a whole number from 0 to 100, got {raw!r}") from None
        return self.set(None if enabled is None else is_on(enabled), percent, guard)

    def _write(self, enabled: bool, percent: int) -> None:
        raise NotImplementedError

    def _remember(self, enabled: bool, percent: int | None) -> None:
        """Keep what was written, for :meth:`state` (a backend that can read its own row needs not)."""
        self._record.write_text(json.dumps({"enabled": enabled, "percent": percent}))


class HttpFlags(_BackendBase):
    """PUT/POST the rendered body to ``spec.url`` (a path joins the environment's service_url)."""

    def __init__(self, spec: FlagSpec, env: str, state_dir: Path, base_url: str, token: str | None) -> None:
        super().__init__(spec, env, state_dir)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=spec.timeout)

    def describe(self) -> str:
        return f"{self.spec.method} {self.spec.url}"

    def _write(self, enabled: bool, percent: int) -> None:
        body = render_body(self.spec.body, enabled, percent)
        try:
            response = self._http.request(self.spec.method, self.spec.url or "/", json=body, headers=self.headers)
        except httpx.HTTPError as exc:
            raise FlagWriteError(f"flag write {self.describe()} failed ({type(exc).__name__}); the flag may not "
                                 "have changed") from exc
        if not 200 <= response.status_code < 300:
            raise FlagWriteError(f"flag write {self.describe()} answered HTTP {response.status_code}: "
                                 f"{response.text[:200]}; the flag may not have changed")

    def close(self) -> None:
        self._http.close()


class CommandFlags(_BackendBase):
    """Run ``spec.command`` with ``{enabled}`` (true/false) and ``{percent}`` filled in.

    An argument may hold a ``${REFERENCE}`` (``--token ${DEPLOY_TOKEN}``): it is resolved only to
    run the command, through ``secret`` (which teaches the value to the redactor); what is shown,
    recorded and reported is the command as written."""

    def __init__(self, spec: FlagSpec, env: str, state_dir: Path, secret: Callable[[str], str]) -> None:
        super().__init__(spec, env, state_dir)
        self._secret = secret

    def describe(self) -> str:
        return " ".join(self.spec.command or [])

    def _write(self, enabled: bool, percent: int) -> None:
        written = self.spec.command or []
        argv = [(self._secret(a) if "${" in a else a)
                .replace("{enabled}", "true" if enabled else "false").replace("{percent}", str(percent))
                for a in written]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.spec.timeout, check=False)
        except subprocess.TimeoutExpired as exc:  # its message repeats the whole argument list
            raise FlagWriteError(f"flag command {written[0]!r} did not finish within {self.spec.timeout:g}s; the "
                                 "flag may not have changed") from exc
        except OSError as exc:
            raise FlagWriteError(f"flag command {written[0]!r} could not run ({type(exc).__name__}: "
                                 f"{exc.strerror or exc}); the flag may not have changed") from exc
        if done.returncode != 0:
            raise FlagWriteError(f"flag command {written[0]!r} exited {done.returncode}: "
                                 f"{(done.stderr or done.stdout).strip()[-200:]}; the flag may not have changed")

    def close(self) -> None:
        pass
