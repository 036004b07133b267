"""Metric templates: named gate metrics with arguments, written once and used by many gates.

::

    include: [shared/slo.yaml]            # files holding more ``templates:`` (paths from the playbook's folder)
    templates:
      error_rate:
        args: {alert: 5%, window: null}   # defaults; null: the use must give it
        metric: {metric: error_rate, target: 1%, alert: "{{args.alert}}", window: "{{args.window}}"}
    gates:
      seed:
        metrics:
          - {use: error_rate, args: {window: 10m}}          # other keys beside use/args override the template's

Templates are expanded before validation, and each expanded field remembers where it was written:
a problem in one names the template's file and line and the use's (``templates.yaml:5 (template
error_rate, used at p.yaml:30)``). An argument standing alone (``"{{args.alert}}"``) keeps its value's
type; inside a longer string it is text.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.util.errors import PlaybookError
from rollout.util.yamlfile import Lines, Places, read_yaml

_ARG = re.compile(r"\{\{\s*args\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")


@dataclass(frozen=True)
class Template:
    name: str
    args: dict[str, Any]
    metric: dict[str, Any]
    file: Path
    lines: Lines
    #: the template's path in its file: ("templates", name)
    path: tuple[Any, ...]

    def place(self, sub: tuple[Any, ...] = ()) -> str:
        return Places(self.file, self.lines).at((*self.path, *sub))


def _templates_of(data: dict[str, Any], places: Places) -> dict[str, Template]:
    raw = data.pop("templates", None)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PlaybookError(f"{places.at(('templates',))}: templates: must map names to templates")
    found = {}
    for name, body in raw.items():
        where = places.at(("templates", name))
        if not isinstance(name, str) or not _NAME.match(name):
            raise PlaybookError(f"{where}: templates.{name}: a template's name is letters, digits, _ and -")
        if not isinstance(body, dict) or not isinstance(body.get("metric"), dict):
            raise PlaybookError(f"{where}: templates.{name}: needs metric: {{...}} (and may have args: {{...}})")
        unknown = sorted(set(body) - {"metric", "args", "description"})
        if unknown:
            raise PlaybookError(f"{where}: templates.{name}.{unknown[0]}: unknown key (metric, args, description)")
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise PlaybookError(
                f"{places.at(('templates', name, 'args'))}: templates.{name}.args: must map names to defaults"
            )
        used = set(_ARG.findall(repr(body["metric"])))
        undeclared = sorted(used - set(args))
        if undeclared:
            raise PlaybookError(
                f"{where}: templates.{name}: uses args.{undeclared[0]} but does not declare it under args"
            )
        found[name] = Template(name, args, body["metric"], places.file, places.lines, ("templates", name))
    return found


def _included(data: dict[str, Any], places: Places) -> dict[str, Template]:
    raw = data.pop("include", None)
    if raw is None:
        return {}
    where = places.at(("include",))
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise PlaybookError(f"{where}: include: must be a list of file paths")
    found: dict[str, Template] = {}
    for index, relative in enumerate(raw):
        file = places.file.parent / relative
        try:
            content, lines = read_yaml(file, PlaybookError)
        except PlaybookError as exc:  # named from the include that asked for it
            raise PlaybookError(f"{places.at(('include', index))}: include.{index}: {exc}") from None
        if not isinstance(content, dict) or set(content) != {"templates"}:
            raise PlaybookError(
                f"{places.at(('include', index))}: include.{index}: {file} must hold only templates: {{...}}"
            )
        for name, template in _templates_of(content, Places(file, lines)).items():
            if name in found:
                raise PlaybookError(f"{template.place()}: template {name!r} is also defined at {found[name].place()}")
            found[name] = template
    return found


def _substitute(value: Any, args: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, args) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, args) for v in value]
    if isinstance(value, str):
        whole = _ARG.fullmatch(value.strip())
        if whole:
            return args[whole.group(1)]
        return _ARG.sub(lambda m: str(args[m.group(1)]), value)
    return value


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*prefix, i))
    return found


def _instantiate(use: dict[str, Any], at: tuple[Any, ...], templates: dict[str, Template], places: Places) -> dict:
    name, field = use["use"], ".".join(map(str, at))
    used_at = places.at(at)
    if name not in templates:
        known = ", ".join(sorted(templates)) or "none defined"
        raise PlaybookError(f"{places.at((*at, 'use'))}: {field}.use: unknown template {name!r} ({known})")
    template = templates[name]
    given = use.get("args") or {}
    if not isinstance(given, dict):
        raise PlaybookError(f"{places.at((*at, 'args'))}: {field}.args: must map names to values")
    unknown = sorted(set(given) - set(template.args))
    if unknown:
        raise PlaybookError(
            f"{places.at((*at, 'args', unknown[0]))}: {field}.args.{unknown[0]}: template {name!r} "
            f"({template.place()}) takes no such argument (it takes: {', '.join(template.args) or 'none'})"
        )
    values = {**template.args, **given}
    missing = sorted(k for k, v in values.items() if v is None)
    if missing:
        raise PlaybookError(f"{used_at}: {field}: template {name!r} ({template.place()}) needs args.{missing[0]}")
    overrides = {k: v for k, v in use.items() if k not in ("use", "args")}
    body = _substitute(copy.deepcopy(template.metric), values)
    for sub in _paths(body):
        if sub and sub[0] not in overrides:
            places.elsewhere[(*at, *sub)] = f"{template.place(('metric', *sub))} (template {name}, used at {used_at})"
    places.elsewhere[at] = f"{used_at} (use: {name}; template at {template.place()})"
    return {**body, **overrides}


def expand_templates(data: dict[str, Any], places: Places) -> dict[str, Any]:
    """The playbook with every ``{use: NAME}`` gate metric replaced by its template (see the module
    docstring); ``places`` learns where each expanded field was written."""
    templates = _included(data, places)
    for name, template in _templates_of(data, places).items():
        if name in templates:
            raise PlaybookError(f"{template.place()}: template {name!r} is also defined at {templates[name].place()}")
        templates[name] = template
    gates = data.get("gates")
    if not isinstance(gates, dict):
        return data
    for gate_name, gate in gates.items():
        metrics = gate.get("metrics") if isinstance(gate, dict) else None
        if not isinstance(metrics, list):
            continue
        for index, metric in enumerate(metrics):
            if isinstance(metric, dict) and "use" in metric:
                metrics[index] = _instantiate(metric, ("gates", gate_name, "metrics", index), templates, places)
    return data
