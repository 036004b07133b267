"""The ``unleash`` flag backend: a feature in an Unleash server, driven through its Admin API.

What rollout changes in Unleash, and nothing else: the feature (created when missing, type
``release``), one ``flexibleRollout`` strategy titled ``rollout`` in the chosen environment (its
percentage is the ramp's; sticky on the customer id; ``groupId`` the feature name, so a customer
in at 10 % stays in at 25 %), and whether the feature is on in that environment. Other strategies,
other environments, variants and segments are left as they are.

A flag-off is one ``POST .../off``, the first request it makes: nothing is read before it, so an
Unleash that cannot be read (down for reads, answering nonsense) is still told to turn the feature
off; the engine then confirms it against what the service reports it applied. A ``404`` to that
``off`` is a failed flag-off (the feature, project or environment is not there), never "missing,
so off". Each operation (a flag-off, a ramp step's write) has one deadline, ``flag.timeout``, for
all its requests together, and every answer is read within :data:`~rollout.util.bounded.MAX_ANSWER_BYTES`
(:mod:`rollout.util.bounded`). Redirects are never followed: a ``3xx`` is a failure naming where
it pointed. The state is read back from the Admin API (the server is the record).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from rollout.flags.base import FlagWriteError, RecordedBackend, check_percent, file_lock
from rollout.playbook.environments import Environment
from rollout.playbook.model import FlagSpec, Reference
from rollout.playbook.plugins import FlagPlugin
from rollout.util import bounded
from rollout.util.yamlfile import FieldProblems

#: what Unleash accepts as a name: what ``encodeURIComponent`` leaves as it is
_UNLEASH_NAME = re.compile(r"[A-Za-z0-9\-_.!~*'()]{1,100}")


class UnleashFlag(FlagSpec):
    """``backend: unleash``: feature ``feature`` of the Unleash server at ``url`` through its Admin
    API (an admin ``token`` reference), in ``project`` and Unleash ``environment`` (default: the
    rollout environment's name), with a ``flexibleRollout`` strategy sticky on ``stickiness``."""

    backend: Literal["unleash"] = "unleash"
    url: str | None = Field(None, min_length=1)
    token: Reference | None = None
    feature: str | None = None
    project: str = "default"
    environment: str | None = None
    stickiness: str = Field("userId", min_length=1, max_length=100)

    @field_validator("feature", "project", "environment")
    @classmethod
    def _unleash_name(cls, value: str | None) -> str | None:
        # Unleash's own rule (``nameType``: URL friendly, 1-100 characters, not "." or ".."): a name it
        # would refuse, or one that collapses the Admin API's paths, is refused here with its line
        if value is not None and (value in (".", "..") or not _UNLEASH_NAME.fullmatch(value)):
            raise ValueError(
                f"{value!r} is not a name Unleash accepts: 1-100 of A-Z a-z 0-9 - _ . ! ~ * ' ( ), and not . or .."
            )
        return value

    @model_validator(mode="after")
    def _complete(self) -> UnleashFlag:
        problems = []
        if not self.url or not self.url.startswith(("http://", "https://")):
            problems.append((("url",), "required for the unleash backend: the server's address, http(s)://..."))
        if not self.token:
            problems.append((("token",), "required for the unleash backend: an admin token reference"))
        if not self.feature:
            problems.append((("feature",), "required for the unleash backend: the feature's name"))
        if problems:
            raise FieldProblems(problems)
        return self


#: the title of the one strategy rollout owns in the environment
STRATEGY_TITLE = "rollout"


class _NotThere(FlagWriteError):
    """HTTP 404: the feature, its project or its environment is not there."""


@dataclass(frozen=True)
class FeatureState:
    """The feature in the environment, as the Admin API answers."""

    exists: bool
    enabled: bool
    percent: int | None
    strategy_id: str | None


class UnleashFlags(RecordedBackend):
    """The engine's side of a feature in Unleash (see the module docstring)."""

    spec: UnleashFlag

    record_only = False  # the server is the record

    def __init__(
        self, spec: UnleashFlag, env: str, state_dir: Path, token: str, transport: httpx.BaseTransport | None = None
    ) -> None:
        super().__init__(spec, env, state_dir)
        assert spec.url and spec.feature  # the model requires both for this backend
        self.url, self.feature, self.project = spec.url.rstrip("/"), spec.feature, spec.project
        self.environment = spec.environment or env
        self.timeout = spec.timeout
        self.headers = {"Authorization": token}  # Unleash takes the token as is, no "Bearer"
        self._http = bounded.client(self.url, self.headers, transport)
        self._feature_path = f"/api/admin/projects/{self.project}/features/{self.feature}"
        self._env_path = f"{self._feature_path}/environments/{self.environment}"

    def describe(self) -> str:
        return f"Unleash {self.url} feature {self.feature} ({self.project}/{self.environment})"

    # --- the Admin API ---------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        doing: str,
        deadline: bounded.Deadline,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """One Admin API request within ``deadline``; every failure is one line naming what was being done."""
        try:
            response = bounded.exchange(self._http, method, path, deadline, json=body)
        except bounded.TooSlow:
            raise FlagWriteError(
                f"Unleash at {self.url} did not answer to {doing} within flag.timeout ({self.timeout:g}s for the "
                "whole operation); the flag may not have changed"
            ) from None
        except bounded.AnswerRefused as exc:
            raise FlagWriteError(
                f"Unleash at {self.url} answered to {doing} with something rollout will not read ({exc}); "
                "the flag may not have changed"
            ) from None
        except httpx.HTTPError as exc:
            raise FlagWriteError(
                f"Unleash at {self.url} cannot be reached to {doing} ({type(exc).__name__}); "
                "the flag may not have changed"
            ) from exc
        if response.status_code == 404:
            if missing_ok:
                return None
            raise _NotThere(f"Unleash at {self.url} refused to {doing}: {self._why(response)}")
        if response.status_code >= 300:
            raise FlagWriteError(f"Unleash at {self.url} refused to {doing}: {self._why(response)}")
        try:
            return response.json() if response.content else None
        except ValueError:
            raise FlagWriteError(f"Unleash at {self.url} answered {doing} with something not JSON") from None

    def _why(self, response: httpx.Response) -> str:
        try:
            data = response.json()
            message = str(data.get("message", "") if isinstance(data, dict) else data)[:200]
        except ValueError:
            message = response.text[:200]
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("location") or "nowhere (no Location header)"
            return (
                f"HTTP {status}, a redirect to {where[:200]}; rollout never follows redirects: set flag.url "
                "to the address the Admin API answers on"
            )
        if status == 401:
            return f"HTTP 401, the token (flag.token) is not valid: {message}"
        if status == 403:
            return f"HTTP 403, the token (flag.token) may not do it (an admin token is needed): {message}"
        if status == 404:
            return (
                f"HTTP 404, feature {self.feature!r}, project {self.project!r} or environment "
                f"{self.environment!r} not found: {message}"
            )
        return f"HTTP {status}: {message}"

    def _shape(self, problem: str) -> FlagWriteError:
        return FlagWriteError(
            f"Unleash at {self.url} answered the read of feature {self.feature} in a shape rollout does not "
            f"know ({problem}); is flag.url an Unleash Admin API?"
        )

    def _read(self, deadline: bounded.Deadline) -> FeatureState:
        data = self._call("GET", self._feature_path, f"read feature {self.feature}", deadline, missing_ok=True)
        if data is None:
            return FeatureState(False, False, None, None)
        if not isinstance(data, dict):
            raise self._shape(f"a JSON {type(data).__name__}, not an object")
        environments = data.get("environments") or []
        if not isinstance(environments, list) or not all(isinstance(e, dict) for e in environments):
            raise self._shape("its environments are not a list of objects")
        env = next((e for e in environments if e.get("name") == self.environment), None)
        if env is None:
            names = ", ".join(str(e.get("name")) for e in environments) or "none"
            raise FlagWriteError(
                f"Unleash at {self.url}: project {self.project!r} has no environment {self.environment!r} "
                f"(it has {names}); set flag.environment"
            )
        strategies = env.get("strategies") or []
        if not isinstance(strategies, list) or not all(isinstance(s, dict) for s in strategies):
            raise self._shape(f"the strategies of {self.environment} are not a list of objects")
        ours = next((s for s in strategies if s.get("title") == STRATEGY_TITLE), None)
        percent = None
        if ours is not None:
            parameters = ours.get("parameters") or {}
            if not isinstance(parameters, dict):
                raise self._shape(f"the parameters of strategy {STRATEGY_TITLE!r} are not an object")
            percent = _percent(parameters.get("rollout"))
        strategy_id = ours.get("id") if ours else None
        return FeatureState(True, env.get("enabled") is True, percent, str(strategy_id) if strategy_id else None)

    def _create(self, deadline: bounded.Deadline) -> None:
        try:
            self._call(
                "POST",
                f"/api/admin/projects/{self.project}/features",
                f"create feature {self.feature} in project {self.project!r}",
                deadline,
                {"name": self.feature, "type": "release", "description": "rolled out by rollout"},
            )
        except FlagWriteError as exc:
            if "HTTP 403" in str(exc):
                raise FlagWriteError(
                    f"{exc}; create feature {self.feature} in Unleash first, or give rollout a token that may"
                ) from None
            raise

    def _strategy(self, state: FeatureState, percent: int, deadline: bounded.Deadline) -> None:
        body = {
            "name": "flexibleRollout",
            "title": STRATEGY_TITLE,
            "parameters": {"rollout": str(percent), "stickiness": self.spec.stickiness, "groupId": self.feature},
            "constraints": [],
        }
        doing = f"set feature {self.feature} to {percent}% in {self.environment}"
        if state.strategy_id is None:
            self._call("POST", f"{self._env_path}/strategies", doing, deadline, body)
        else:
            self._call("PUT", f"{self._env_path}/strategies/{state.strategy_id}", doing, deadline, body)

    def _switch(self, on: bool, deadline: bounded.Deadline, missing_ok: bool = False) -> bool:
        """Turn the feature on or off in the environment; False when it is not there (``missing_ok``)."""
        word = "on" if on else "off"
        doing = f"turn feature {self.feature} {word} in {self.environment}"
        try:
            self._call("POST", f"{self._env_path}/{word}", doing, deadline)
        except _NotThere as exc:
            if missing_ok:
                return False
            raise FlagWriteError(f"{exc}; nothing was turned {word}") from None
        return True

    # --- the backend -----------------------------------------------------------------------------

    def state(self) -> tuple[bool, int | None]:
        """(on in the environment?, rollout's percentage) as Unleash holds them now (one read,
        within ``flag.timeout``)."""
        read = self._read(bounded.Deadline(self.timeout))
        return read.enabled, read.percent

    def _remember(self, enabled: bool, percent: int | None) -> None:
        """Unleash is the record: nothing to keep beside it."""

    def set(
        self, enabled: bool | None = None, percent: int | None = None, guard: Callable[[], None] | None = None
    ) -> dict[str, str]:
        """Write the flag and/or percentage within one ``flag.timeout``. An off is the first request,
        before anything is read; returns what was there (after an off alone: nothing, it was not read;
        the engine's record says what the feature held)."""
        return self._apply(enabled, percent, guard)

    def replace(self, values: Mapping[str, str], guard: Callable[[], None] | None = None) -> dict[str, str]:
        """A configure step: the flag and the percentage among ``values``; a feature that does not exist
        yet is created when a percentage is given (a flag-off through :meth:`set` never creates one)."""
        return self._apply(*self._flag_and_percent(values), guard, configure=True)

    def _apply(
        self, enabled: bool | None, percent: int | None, guard: Callable[[], None] | None, configure: bool = False
    ) -> dict[str, str]:
        check_percent(self.percent_variable, percent)
        deadline = bounded.Deadline(self.timeout)
        with file_lock(self._lock_path):
            if guard is not None:
                guard()
            if enabled is False:
                # the off first: nothing read, nothing else written before it. A write with a percentage
                # (a configure) may meet a feature not created yet, created below; a flag-off may not
                there = self._switch(False, deadline, missing_ok=configure or percent is not None)
                if percent is None:
                    return {}
                now = self._read(deadline) if there else FeatureState(False, False, None, None)
                before: dict[str, str] = {self.flag_variable: "false"} if not there else {}
            else:
                now = self._read(deadline)
                before = self._as_variables(now.enabled, now.percent)
            new_on = now.enabled if enabled is None else enabled
            new_percent = now.percent if percent is None else percent
            state = now
            if not now.exists and (new_on or percent is not None):
                self._create(deadline)
                state = self._read(deadline)
            if new_on and new_percent is None:
                new_percent = 100  # on with no percentage given: everyone, as the other backends
            if new_percent is not None and (new_percent != state.percent or state.strategy_id is None):
                self._strategy(state, new_percent, deadline)
            if new_on and not state.enabled:
                self._switch(True, deadline)
            if enabled is False and now.percent is not None:
                before[self.percent_variable] = str(now.percent)
            return before

    def close(self) -> None:
        self._http.close()


def _percent(raw: object) -> int | None:
    """Rollout's strategy's percentage, when it is a whole number from 0 to 100 (else unknown)."""
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if 0 <= value <= 100 else None


def open_backend(spec: UnleashFlag, env: Environment, state_dir: Path, secret: Callable[[str], str]) -> UnleashFlags:
    """The feature the playbook names, its admin token resolved (and taught to the redactor)."""
    return UnleashFlags(spec, env.name, state_dir, secret(spec.token or ""))


class UnleashBackend(FlagPlugin):
    """The ``unleash`` flag backend, as a plugin."""

    name = "unleash"
    config = UnleashFlag
    open = staticmethod(open_backend)
