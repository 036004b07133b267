"""Env files: the ``KEY=VALUE`` files the service reads live and the engine writes.

Reading uses python-dotenv (quotes, comments, ``${VAR}`` interpolation from the process
environment). Writing is atomic: a temporary file in the same folder, fsynced, then renamed over
the target, so a reader never sees half a file.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from rollout.util.errors import ConfigError

#: what a variable name may look like, wherever it enters (playbook, environment file, --set)
NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a variable name, or None."""
    if not isinstance(name, str) or not NAME.match(name):
        return f"{name!r} is not a variable name (capital letters, digits and _, not starting with a digit)"
    return None


def value_problem(value: str) -> str | None:
    """Why ``value`` cannot be written to an env file (a line break would start a new variable)."""
    if _CONTROL.search(value):
        return "contains a line break or another control character"
    return None


def read_env_file(path: Path, strict: bool = False) -> dict[str, str]:
    """Return the variables of ``path``; a variable without a value reads as an empty string.

    Raises :class:`ConfigError` naming the file when it cannot be read; with ``strict`` (a file a
    person hands rollout, such as ``--secrets-file``) also naming the first line that is not
    ``KEY=VALUE``, where python-dotenv would only log a warning and skip it.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: env file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: env file cannot be read ({exc.__class__.__name__})") from exc
    if strict:
        bad = next((binding for binding in parse_stream(io.StringIO(text)) if binding.error), None)
        if bad is not None:
            raise ConfigError(f"{path}:{bad.original.line}: not a KEY=VALUE line (a value with spaces is quoted)")
    values = dotenv_values(stream=io.StringIO(text), interpolate=True)
    return {key: ("" if value is None else value) for key, value in values.items()}


def _quote(value: str) -> str:
    if value == "" or any(c in value for c in " #'\"\\$\n\t="):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
        return f"'{escaped}'"
    return value


def render_env(values: Mapping[str, str], header: str | None = None) -> str:
    """Render ``values`` as env-file text, keys in the given order."""
    for key in values:
        # the last line of defence against a key that would start a second line; entry points check
        # names strictly first. Values are quoted and escaped, so they cannot break a line.
        if not key or re.search(r"[\s=#'\"]", key) or _CONTROL.search(key):
            raise ConfigError(f"{key!r}: not a variable name that can be written to an env file")
    lines = [f"# {line}" for line in (header or "").splitlines()]
    lines += [f"{key}={_quote(str(value))}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_.]*)(\s*=)")


def updated_env_text(text: str, changes: Mapping[str, str]) -> str:
    """``text`` with each variable of ``changes`` set in place, every other line (comments, blank
    lines, variables rollout does not manage, ``export`` prefixes) kept as it was; variables not
    in the text yet are appended."""
    for key in changes:
        if not key or re.search(r"[\s=#'\"]", key) or _CONTROL.search(key):
            raise ConfigError(f"{key!r}: not a variable name that can be written to an env file")
    seen: set[str] = set()
    lines = []
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and match.group(2) in changes:
            key = match.group(2)
            seen.add(key)
            line = f"{match.group(1)}{key}={_quote(str(changes[key]))}"
        lines.append(line)
    lines += [f"{key}={_quote(str(value))}" for key, value in changes.items() if key not in seen]
    return "\n".join(lines) + "\n"


def edit_env_file(path: Path, changes: Mapping[str, str], header: str | None = None) -> None:
    """Set ``changes`` in ``path`` and keep everything else (see :func:`updated_env_text`); atomic,
    like :func:`write_env_file`. A new file starts with ``header``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = "\n".join(f"# {line}" for line in (header or "").splitlines())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: env file cannot be read ({exc.__class__.__name__})") from exc
    _write_atomically(path, updated_env_text(text, changes) if text else render_env(changes))


def write_env_file(path: Path, values: Mapping[str, str], header: str | None = None) -> None:
    """Write ``values`` to ``path`` atomically (temp file, fsync, rename) with mode 0600."""
    _write_atomically(Path(path), render_env(values, header))


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
