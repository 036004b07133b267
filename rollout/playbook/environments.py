"""Environments: each one's variables, where its service lives, and how to reach it.

An environment file (``environments/NAME.yaml``) holds no secret: a variable whose name says it is
one (``*TOKEN*``, ``*SECRET*``, ``*PASSWORD*``, ``*KEY*``) must be a reference such as
``${ZAPTRA_API_TOKEN}``, resolved from the process environment or a secrets file when the
environment is applied. Resolved secrets are known to a :class:`~rollout.util.redact.Redactor` and
never printed.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from rollout.playbook.builtin import vocabulary
from rollout.playbook.schedule import ScheduleKeys
from rollout.util.envfile import name_problem, read_env_file, value_problem
from rollout.util.errors import ConfigError
from rollout.util.redact import REDACTED, Redactor
from rollout.util.yamlfile import FieldProblems, interpolate, read_yaml

_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|KEY", re.IGNORECASE)
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class Environment(ScheduleKeys):
    """An environment as written in its file (secret references unresolved); its ``windows``,
    ``freeze``, ``start_at`` and ``cutoff`` hold for every phase that runs in it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    description: str = ""
    service_url: str = Field(pattern=r"^https?://")
    #: the env file the service reads (the ``envfile`` flag backend writes it); other backends need none
    env_file: Path | None = None
    sandbox_url: str | None = Field(None, pattern=r"^https?://")
    sandbox_token: str | None = None
    secrets_file: Path | None = None
    #: each replica of the service, when ``service_url`` is one of several (or a load balancer): the
    #: flag hint goes to each after a flag-off, and ``rollout drill`` times each
    replicas: list[str] = Field(default_factory=list, max_length=100)
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("variables", mode="before")
    @classmethod
    def _as_strings(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: (str(v).lower() if isinstance(v, bool) else "" if v is None else str(v)) for k, v in value.items()
            }
        return value

    @field_validator("variables")
    @classmethod
    def _secrets_are_references(cls, value: dict[str, str]) -> dict[str, str]:
        problems = [
            ((name,), f"{name} must be a reference like ${{{name}}}, never a value in the file")
            for name, raw in value.items()
            if is_secret_name(name) and raw and not _REF.fullmatch(raw.strip())
        ]
        problems += [((name,), problem) for name, problem in variable_problems(value)]
        if problems:
            raise FieldProblems(problems)
        return value

    @field_validator("replicas")
    @classmethod
    def _replica_urls(cls, value: list[str]) -> list[str]:
        bad = [url for url in value if not re.match(r"^https?://", url)]
        if bad:
            raise ValueError(f"each replica is an http(s):// URL, got {bad[0]!r}")
        return [url.rstrip("/") for url in value]

    @field_validator("sandbox_token")
    @classmethod
    def _token_is_reference(cls, value: str | None) -> str | None:
        if value and not _REF.fullmatch(value.strip()):
            raise ValueError("must be a reference like ${ZAPTRA_SANDBOX_TOKEN}, never a value in the file")
        return value


@dataclass(frozen=True)
class Resolved:
    """An environment with every reference resolved; ``secrets`` are the values to redact."""

    env: Environment
    values: dict[str, str]
    secrets: tuple[str, ...]
    sandbox_token: str | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    #: the command's one redactor (it has learned ``secrets``); None: one of these secrets alone
    shared: Redactor | None = field(default=None, compare=False, repr=False)

    @property
    def admin_token(self) -> str:
        return self.values.get("ROLLOUT_ADMIN_TOKEN", "")

    def redactor(self) -> Redactor:
        return self.shared if self.shared is not None else Redactor(self.secrets)

    def sharing(self, redactor: Redactor) -> Resolved:
        """This environment with ``redactor`` taught its secrets and used for everything it shows."""
        redactor.learn(self.secrets)
        return dataclasses.replace(self, shared=redactor)

    def shown(self, values: Mapping[str, str] | None = None) -> dict[str, str]:
        """``values`` (default: this environment's) with secret variables as ``***``."""
        values = self.values if values is None else values
        return {k: (REDACTED if is_secret_name(k) and v else self.redactor().text(v)) for k, v in values.items()}


def variable_problems(values: Mapping[str, str], literal_only: bool = True) -> list[tuple[str, str]]:
    """``(name, problem)`` for each bad variable: a name that is not ``[A-Z_][A-Z0-9_]*``, a value
    with a line break, or a value the embedded service would refuse. With ``literal_only``, values
    that still hold ``${...}`` references are judged after they are resolved."""
    problems = []
    for name, value in values.items():
        problem = name_problem(name) or value_problem(str(value))
        if problem:
            problems.append((name, problem))
    judged = {k: v for k, v in values.items() if not (literal_only and "${" in str(v)) and name_problem(k) is None}
    return problems + vocabulary().setting_problems(judged)


def check_variables(values: Mapping[str, str], source: str) -> None:
    """Raise one :class:`ConfigError` naming ``source`` and every bad variable; nothing is written."""
    problems = variable_problems(values, literal_only=False)
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(f"{name}: {problem}" for name, problem in problems))
    vocabulary().check_settings(values, source)  # the rules between variables (a token when the flag is on)


def environment_path(name: str, folder: Path) -> Path:
    return Path(folder) / f"{name}.yaml"


def load_environment(
    name: str, folder: Path | str = "environments", environ: Mapping[str, str] | None = None
) -> Environment:
    """Load ``folder/NAME.yaml``. References in ``variables`` and ``sandbox_token`` stay unresolved."""
    path = environment_path(name, Path(folder))
    if not path.exists():
        known = sorted(p.stem for p in Path(folder).glob("*.yaml")) if Path(folder).is_dir() else []
        raise ConfigError(f"{path}: no such environment {name!r}" + (f" (known: {', '.join(known)})" if known else ""))
    environ = os.environ if environ is None else environ
    data, lines = read_yaml(path, ConfigError)
    if isinstance(data, dict):
        # interpolate the plain fields now; secret-bearing ones wait for resolve()
        for key in ("service_url", "env_file", "sandbox_url", "secrets_file"):
            if isinstance(data.get(key), str):
                data[key] = interpolate(data[key], environ, lines, path, ConfigError, (key,))
    env = _validate(path, data, lines)
    if env.name != name:
        raise ConfigError(f"{path}:{lines.get(('name',), 1)}: name: is {env.name!r}, the file is {name!r}")
    return env


def _validate(path: Path, data: Any, lines: dict) -> Environment:
    from pydantic import ValidationError

    from rollout.util.yamlfile import validation_message

    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: the file must hold a mapping (key: value) at the top level")
    try:
        return Environment.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(path, exc, lines)) from exc


def resolve(
    env: Environment,
    overrides: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    secrets_file: Path | None = None,
) -> Resolved:
    """Resolve references from the process environment, then the secrets file.

    Raises :class:`ConfigError` naming the environment and the variable when a reference has no
    value and no default.
    """
    environ = os.environ if environ is None else environ
    file_values: dict[str, str] = {}
    source = secrets_file or env.secrets_file
    if source is not None:
        file_values = read_env_file(Path(source).expanduser(), strict=True)
    secrets: list[str] = []

    def resolve_one(name: str, raw: str) -> str:
        def found(ref: str, value: str) -> None:
            if is_secret_name(name) or is_secret_name(ref):
                secrets.append(value)

        return _substitute(raw, f"environment {env.name}: {name}", environ, file_values, source, found)

    values = {name: resolve_one(name, raw) for name, raw in env.variables.items()}
    extra = dict(overrides or {})
    bad_names = [f"{name!r}" for name in extra if name_problem(name)]
    if bad_names:
        raise ConfigError(
            f"environment {env.name}: {', '.join(bad_names)}: not a variable name (capital letters, "
            "digits and _, not starting with a digit)"
        )
    for name, value in extra.items():
        if is_secret_name(name) and not _REF.fullmatch(value):
            raise ConfigError(f"environment {env.name}: {name}: secrets cannot be set inline; use a reference")
        values[name] = resolve_one(name, value)
    token = resolve_one("sandbox_token", env.sandbox_token) if env.sandbox_token else None
    resolved = Resolved(env, values, tuple(s for s in secrets if s), token, extra)
    try:
        check_variables(values, f"environment {env.name}")
    except ConfigError as exc:  # a resolved secret may be quoted back in the message
        raise ConfigError(resolved.redactor().text(str(exc))) from None
    return resolved


def _substitute(
    raw: str,
    where: str,
    environ: Mapping[str, str],
    file_values: Mapping[str, str],
    source: Path | None,
    found: Callable[[str, str], None] | None = None,
) -> str:
    """Every ``${NAME}`` or ``${NAME:-default}`` of ``raw`` from ``environ``, then ``file_values``
    (read from ``source``), then the default; ``found(name, value)`` hears of each. Raises
    :class:`ConfigError` naming ``where`` for a reference with no value and no default."""

    def sub(match: re.Match[str]) -> str:
        ref, default = match.group(1), match.group(2)
        if ref in environ:
            value = environ[ref]
        elif ref in file_values:
            value = file_values[ref]
        elif default is not None:
            value = default
        else:
            raise ConfigError(
                f"{where}: ${{{ref}}} is not set (process environment{' or ' + str(source) if source else ''})"
            )
        if found is not None:
            found(ref, value)
        return value

    return _REF.sub(sub, raw)


def reference_value(
    raw: str,
    where: str,
    secrets_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    found: Callable[[str, str], None] | None = None,
) -> str:
    """Resolve every ``${NAME}`` in ``raw`` (a token, header or command argument of a playbook) as
    :func:`resolve` does: the process environment, then ``secrets_file``; ``found(name, value)``
    hears of each value (to learn it for redaction)."""
    file_values = read_env_file(Path(secrets_file).expanduser(), strict=True) if secrets_file else {}
    return _substitute(raw, where, os.environ if environ is None else environ, file_values, secrets_file, found)


def diff(before: Mapping[str, str], after: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """``(name, old, new)`` for every variable of ``after`` that differs; None where absent. Variables
    only in ``before`` are not rollout's: applying ``after`` leaves them as they are."""
    return [(n, before.get(n), after.get(n)) for n in after if before.get(n) != after.get(n)]


def shown_diff(resolved: Resolved, before: Mapping[str, str]) -> list[tuple[str, str | None, str | None]]:
    """The diff with secrets shown as ``***`` (or ``*** (changed)``)."""
    rows = []
    for name, old, new in diff(before, resolved.values):
        if is_secret_name(name):
            old = REDACTED if old else old
            new = (REDACTED + " (changed)" if old else REDACTED) if new else new
        else:
            old = resolved.redactor().text(old) if old is not None else None
            new = resolved.redactor().text(new) if new is not None else None
        rows.append((name, old, new))
    return rows
