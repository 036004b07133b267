"""The ``unleash`` flag backend: a feature in an Unleash server, driven through its Admin API.

What rollout changes in Unleash, and nothing else: the feature (created when missing, type
``release``), one ``flexibleRollout`` strategy titled ``rollout`` in the chosen environment (its
percentage is the ramp's; sticky on the customer id; ``groupId`` the feature name, so a customer
in at 10 % stays in at 25 %), and whether the feature is on in that environment. Other strategies,
other environments, variants and segments are left as they are.

A flag-off is one ``POST .../off`` first, whatever else is to be written. The state is read back
from the Admin API (the server is the record); the engine confirms a change against what the
service reports it applied.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rollout.flags.base import FlagWriteError, RecordedBackend, check_percent, file_lock
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec

#: the title of the one strategy rollout owns in the environment
STRATEGY_TITLE = "rollout"


@dataclass(frozen=True)
class FeatureState:
    """The feature in the environment, as the Admin API answers."""

    exists: bool
    enabled: bool
    percent: int | None
    strategy_id: str | None


class UnleashFlags(RecordedBackend):
    """The engine's side of a feature in Unleash (see the module docstring)."""

    def __init__(self, spec: FlagSpec, env: str, state_dir: Path, token: str) -> None:
        super().__init__(spec, env, state_dir)
        assert spec.url and spec.feature  # the model requires both for this backend
        self.url, self.feature, self.project = spec.url.rstrip("/"), spec.feature, spec.project
        self.environment = spec.environment or env
        self.headers = {"Authorization": token}  # Unleash takes the token as is, no "Bearer"
        self._http = httpx.Client(base_url=self.url, timeout=spec.timeout, headers=self.headers)
        self._feature_path = f"/api/admin/projects/{self.project}/features/{self.feature}"
        self._env_path = f"{self._feature_path}/environments/{self.environment}"

    def describe(self) -> str:
        return f"Unleash {self.url} feature {self.feature} ({self.project}/{self.environment})"

    # --- the Admin API ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, doing: str, body: Any = None, missing_ok: bool = False) -> Any:
        """One Admin API request; every failure is one line naming what was being done."""
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise FlagWriteError(
                f"Unleash at {self.url} cannot be reached to {doing} ({type(exc).__name__}); "
                "the flag may not have changed"
            ) from exc
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code >= 300:
            raise FlagWriteError(f"Unleash at {self.url} refused to {doing}: {self._why(response)}")
        try:
            return response.json() if response.content else None
        except ValueError:
            raise FlagWriteError(f"Unleash at {self.url} answered {doing} with something not JSON") from None

    def _why(self, response: httpx.Response) -> str:
        try:
            message = str(response.json().get("message", ""))[:200]
        except (ValueError, AttributeError):
            message = response.text[:200]
        if response.status_code == 401:
            return f"HTTP 401, the token (flag.token) is not valid: {message}"
        if response.status_code == 403:
            return f"HTTP 403, the token (flag.token) may not do it (an admin token is needed): {message}"
        if response.status_code == 404:
            return f"HTTP 404, project {self.project!r} or environment {self.environment!r} not found: {message}"
        return f"HTTP {response.status_code}: {message}"

    def _read(self) -> FeatureState:
        data = self._call("GET", self._feature_path, f"read feature {self.feature}", missing_ok=True)
        if data is None:
            return FeatureState(False, False, None, None)
        environments = data.get("environments") or []
        env = next((e for e in environments if e.get("name") == self.environment), None)
        if env is None:
            names = ", ".join(str(e.get("name")) for e in environments) or "none"
            raise FlagWriteError(
                f"Unleash at {self.url}: project {self.project!r} has no environment {self.environment!r} "
                f"(it has {names}); set flag.environment"
            )
        ours = next((s for s in env.get("strategies") or [] if s.get("title") == STRATEGY_TITLE), None)
        percent = None
        if ours is not None:
            with contextlib.suppress(TypeError, ValueError):
                percent = int(str((ours.get("parameters") or {}).get("rollout")))
        return FeatureState(True, bool(env.get("enabled")), percent, ours.get("id") if ours else None)

    def _create(self) -> None:
        try:
            self._call(
                "POST",
                f"/api/admin/projects/{self.project}/features",
                f"create feature {self.feature} in project {self.project!r}",
                {"name": self.feature, "type": "release", "description": "rolled out by rollout"},
            )
        except FlagWriteError as exc:
            if "HTTP 403" in str(exc):
                raise FlagWriteError(
                    f"{exc}; create feature {self.feature} in Unleash first, or give rollout a token that may"
                ) from None
            raise

    def _strategy(self, state: FeatureState, percent: int) -> None:
        body = {
            "name": "flexibleRollout",
            "title": STRATEGY_TITLE,
            "parameters": {"rollout": str(percent), "stickiness": self.spec.stickiness, "groupId": self.feature},
            "constraints": [],
        }
        doing = f"set feature {self.feature} to {percent}% in {self.environment}"
        if state.strategy_id is None:
            self._call("POST", f"{self._env_path}/strategies", doing, body)
        else:
            self._call("PUT", f"{self._env_path}/strategies/{state.strategy_id}", doing, body)

    def _switch(self, on: bool) -> None:
        word = "on" if on else "off"
        self._call("POST", f"{self._env_path}/{word}", f"turn feature {self.feature} {word} in {self.environment}")

    # --- the backend -----------------------------------------------------------------------------

    def state(self) -> tuple[bool, int | None]:
        """(on in the environment?, rollout's percentage) as Unleash holds them now."""
        read = self._read()
        return read.enabled, read.percent

    def _remember(self, enabled: bool, percent: int | None) -> None:
        """Unleash is the record: nothing to keep beside it."""

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        """Write the flag and/or percentage; an off goes first, before anything else is written."""
        check_percent(self.percent_variable, percent)
        with file_lock(self._lock_path):
            if guard is not None:
                guard()
            now = self._read()
            new_on = now.enabled if enabled is None else enabled
            new_percent = now.percent if percent is None else percent
            if not new_on and now.exists:
                self._switch(False)
            state = now
            if not now.exists and (new_on or percent is not None):
                self._create()
                state = self._read()
            if new_on and new_percent is None:
                new_percent = 100  # on with no percentage given: everyone, as the other backends
            if new_percent is not None and (new_percent != state.percent or state.strategy_id is None):
                self._strategy(state, new_percent)
            if new_on and not state.enabled:
                self._switch(True)
            return self._as_variables(now.enabled, now.percent)

    def close(self) -> None:
        self._http.close()


def open_backend(spec: FlagSpec, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> UnleashFlags:
    """The feature the playbook names, its admin token resolved (and taught to the redactor)."""
    return UnleashFlags(spec, env.name, state_dir, secret(spec.token or ""))
