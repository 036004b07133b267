"""YAML files validated into pydantic models, with errors that name the file, line and field.

``yaml.compose`` keeps every node's position; :func:`load_model` walks the node tree to map each
field path to its line, so a pydantic error ``phases.2.steps.0.gate: ...`` becomes
``playbooks/whatsapp.yaml:41: phases.2.steps.0.gate: unknown gate set 'x'``.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rollout.util.errors import RolloutError

M = TypeVar("M", bound=BaseModel)
Lines = dict[tuple[Any, ...], int]
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


#: deeper than this, a file is not configuration (and recursive composers would crash)
MAX_DEPTH = 32
#: nodes a file may hold, or expand to through its aliases (the shipped playbook has about 300)
MAX_NODES = 20_000
#: libyaml's safe loader where PyYAML was built with it (a few times faster), else PyYAML's own
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: the largest file read (the shipped playbook is about 6 KiB): larger is not configuration
MAX_FILE_BYTES = 1 << 20


def check_shape(text: str, file: Path, error: type[RolloutError]) -> None:
    """Refuse YAML that would take the loader down, before anything is built from it: nesting
    deeper than :data:`MAX_DEPTH`, an alias that refers to the node it is in (a loop), or aliases
    that expand to more than :data:`MAX_NODES` nodes (a "billion laughs"). PyYAML's event parser
    is not recursive, so this scan is linear in the file whatever the file holds."""
    expanded = written = 0
    sizes: dict[str, int] = {}
    open_nodes: list[tuple[int, str | None]] = []  # (expanded count at its start, its anchor)
    for event in _events(text, file, error):
        line = event.start_mark.line + 1 if event.start_mark is not None else 0
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for _, anchor in open_nodes):
                raise error(f"{file}:{line}: alias *{event.anchor} refers to the node it is in (a loop)")
            expanded += sizes.get(event.anchor or "", 1)
        elif isinstance(event, yaml.ScalarEvent):
            expanded += 1
            written += 1
            if event.anchor:
                sizes[event.anchor] = 1
        elif isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_DEPTH:
                raise error(f"{file}:{line}: nested deeper than {MAX_DEPTH} levels")
            open_nodes.append((expanded, event.anchor))
            expanded += 1
            written += 1
        elif isinstance(event, yaml.CollectionEndEvent):
            start, anchor = open_nodes.pop()
            if anchor:
                sizes[anchor] = expanded - start
        if written > MAX_NODES:
            raise error(f"{file}:{line}: holds more than {MAX_NODES} values; a playbook is not that large")
        if expanded > MAX_NODES:
            raise error(
                f"{file}:{line}: aliases expand this file to more than {MAX_NODES} nodes; "
                "write the repeated parts out, or use fewer levels of aliases"
            )


def _events(text: str, file: Path, error: type[RolloutError]) -> Iterator[yaml.Event]:
    try:
        yield from yaml.parse(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        # libyaml stops at 1000 levels on its own, before the scan's own limit is seen
        if "maximum nesting depth" not in str(exc):
            raise
        mark = getattr(exc, "problem_mark", None)
        raise error(f"{file}:{mark.line + 1 if mark else 0}: nested deeper than {MAX_DEPTH} levels") from exc


def _walk(node: yaml.Node, path: tuple[Any, ...], lines: Lines, file: Path) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            # a key that is itself a list or a mapping is not a field name: name it by its line
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else f"<{key_node.id} key>"
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _LoadError(
                    f"{file}:{line}: {'.'.join(map(str, (*path, key)))}: duplicate key (first at line {seen[key]})"
                )
            seen[key] = line
            lines[(*path, key)] = line
            _walk(value_node, (*path, key), lines, file)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines, file)


class _LoadError(RolloutError):
    pass


class FieldProblems(ValueError):
    """Raise inside a pydantic validator with ``(sub path, problem)`` pairs: the loader then names
    the exact key and its line, not just the field the validator sits on."""

    def __init__(self, problems: list[tuple[tuple[Any, ...], str]]) -> None:
        super().__init__("; ".join(problem for _, problem in problems))
        self.problems = problems


def read_text(path: Path, error: type[RolloutError]) -> str:
    """The text of ``path``, which must be a regular file of at most :data:`MAX_FILE_BYTES`: never
    ``/dev/zero`` read without end, never a FIFO waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO: open does not wait for a writer
    except FileNotFoundError as exc:
        raise error(f"{path}: file not found") from exc
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc.__class__.__name__})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise error(f"{path}: not a regular file (a device, a FIFO or a folder is never read)")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise error(f"{path}: larger than {MAX_FILE_BYTES >> 20} MiB; a playbook is not that large")
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read ({exc.__class__.__name__})") from exc
    finally:
        os.close(fd)


def read_yaml(path: Path, error: type[RolloutError]) -> tuple[Any, Lines]:
    """Parse ``path`` (see :func:`read_text`) safely; return the data and a field-path -> line map."""
    text = read_text(path, error)
    try:
        check_shape(text, path, error)
        loader = _LOADER(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise error(f"{where}: invalid YAML: {problem}") from exc
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for values that look typed but are not (2026-13-45)
        raise error(f"{path}: invalid YAML: a value cannot be read ({exc})") from exc
    lines: Lines = {}
    if node is not None:
        try:
            _walk(node, (), lines, path)
        except _LoadError as exc:
            raise error(str(exc)) from exc
    return data, lines


class Places:
    """Where each field path of a document was written: its line in ``file``, or, for parts
    expanded from elsewhere (a template), that place and where it was used (``elsewhere``)."""

    def __init__(self, file: Path, lines: Lines, elsewhere: dict[tuple[Any, ...], str] | None = None) -> None:
        self.file, self.lines, self.elsewhere = file, lines, elsewhere or {}

    def at(self, path: tuple[Any, ...]) -> str:
        """``file:line`` of ``path``, or of its nearest ancestor written anywhere."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.elsewhere:
                return self.elsewhere[path[:end]]
            if path[:end] in self.lines:
                return f"{self.file}:{self.lines[path[:end]]}"
        return str(self.file)


def interpolate(
    data: Any,
    environ: Mapping[str, str],
    lines: Lines | Places,
    file: Path,
    error: type[RolloutError],
    path: tuple[Any, ...] = (),
) -> Any:
    """Replace ``${NAME}`` and ``${NAME:-default}`` in strings from ``environ``."""
    places = lines if isinstance(lines, Places) else Places(file, lines)
    if isinstance(data, dict):
        return {k: interpolate(v, environ, places, file, error, (*path, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate(v, environ, places, file, error, (*path, i)) for i, v in enumerate(data)]
    if isinstance(data, str) and "${" in data and not secret_field(path):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            raise error(f"{places.at(path)}: {'.'.join(map(str, path))}: ${{{name}}} is not set and has no default")

        return _REF.sub(sub, data)
    return data


def secret_field(path: tuple[Any, ...]) -> bool:
    """A ``token`` or ``database`` field, a request header or an argument of the flag's command (the
    natural place for ``--token ${DEPLOY_TOKEN}``): it stays a ``${REFERENCE}`` in the model and is
    resolved only when used (and redacted everywhere), never at load time."""
    return bool(path) and (
        path[-1] in ("token", "database") or "headers" in path[:-1] or tuple(path[:-1]) == ("flag", "command")
    )


def validation_message(
    file: Path, exc: ValidationError, lines: Lines | Places, limit: int = 8, data: Any = None
) -> str:
    """One line per problem, ``file:line: field.path: problem``, joined with '; '. ``data`` (what was
    validated) lets the union tags pydantic puts in a location be told from the keys written."""
    places = lines if isinstance(lines, Places) else Places(file, lines)
    problems: list[str] = []
    for err in exc.errors():
        loc = _written(err["loc"], data)
        nested = (err.get("ctx") or {}).get("error")
        for sub_path, text in getattr(nested, "problems", None) or [((), err["msg"].removeprefix("Value error, "))]:
            full = (*loc, *sub_path)
            field = ".".join(map(str, full)) or "(top level)"
            text = _friendly(dict(err), text)
            problems.append(f"{places.at(full)}: {field}: {text}")
    more = f" (+{len(problems) - limit} more)" if len(problems) > limit else ""
    return "; ".join(problems[:limit]) + more


#: the keys whose value names a discriminated union's member (a plugin: ``backend: unleash``, ``kind: ramp``)
_TAG_KEYS = ("kind", "backend", "type", "judge")


def _written(loc: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """``loc`` without the tags pydantic inserts for a discriminated union's member (``flag.unleash.url``
    is ``flag.url`` as written). Walked along ``data``: a name that is no key of its mapping is a tag,
    unless it is the last (a required key that is missing) and is not the mapping's tag value."""
    kept: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part not in node:
            tagged = any(node.get(key) == part for key in _TAG_KEYS)
            if tagged or i < len(loc) - 1:
                continue
        kept.append(part)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(kept)


def _friendly(err: dict[str, Any], text: str) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required"
    if kind in ("union_tag_invalid", "unknown_plugin"):
        expected = (err.get("ctx") or {}).get("expected_tags", "")
        tag = str((err.get("ctx") or {}).get("discriminator", "kind")).strip("'")
        given = err.get("input")
        if isinstance(given, dict):
            given = given.get(tag)
        if given is None:
            return f"missing {tag}; expected one of {expected}"
        return f"unknown {tag} {given!r}; expected one of {expected}"
    if kind == "union_tag_not_found":
        return f"missing {(err.get('ctx') or {}).get('discriminator', 'kind')}"
    return text


def load_model(
    path: Path,
    model: type[M],
    error: type[RolloutError],
    environ: Mapping[str, str] | None = None,
    expand: Callable[[dict[str, Any], Places], dict[str, Any]] | None = None,
) -> M:
    """Read ``path``, expand it (``expand``: templates, say, recording where each part came from),
    interpolate ``${...}``, and validate it into ``model``; raise ``error`` on any problem."""
    data, lines = read_yaml(path, error)
    if not isinstance(data, dict):
        raise error(f"{path}:1: the file must hold a mapping (key: value) at the top level")
    places = Places(path, lines)
    if expand is not None:
        data = expand(data, places)
    data = interpolate(data, os.environ if environ is None else environ, places, path, error)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(validation_message(path, exc, places, data=data)) from exc
