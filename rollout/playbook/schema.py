"""JSON Schemas of the playbook and environment files, as people write them, for editors.

Generated from the pydantic models (so a model added later, a plugin's config among them, joins by
itself), then widened to what the loader accepts before it validates: ``${NAME}`` and
``${NAME:-default}`` wherever a value may stand, a field's other accepted names (``bookings`` for
``requests``), and the playbook's metric templates (``include:``, ``templates:``, a metric written as
``{use: NAME, args: {...}}``). Unknown keys stay refused (``additionalProperties: false``, from
``extra="forbid"``), so an editor flags the same typos ``rollout validate`` does.
"""

from __future__ import annotations

import copy
import types
import typing
from typing import Any

from pydantic import AliasChoices, BaseModel

from rollout.playbook.environments import Environment
from rollout.playbook.model import MetricGate, Playbook
from rollout.playbook.plugins import GROUPS, JUDGES

#: draft-07: what yaml-language-server (VS Code's YAML extension) validates with; nothing below needs a later one
DRAFT = "http://json-schema.org/draft-07/schema#"
#: a value written as a reference to the process environment, resolved when the file is loaded
REFERENCE = {
    "type": "string",
    "pattern": r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}",
    "description": "${NAME} or ${NAME:-default}: read from the environment when the file is loaded",
}
_SCALARS = {"integer", "number", "boolean"}


def playbook_schema() -> dict[str, Any]:
    """The JSON Schema of a playbook file."""
    schema = _widened(Playbook, "rollout playbook")
    defs = schema["$defs"]
    metric = MetricGate.__name__
    # an alert metric fails while its alert fires: it has no thresholds (MetricGate fills them in)
    gate = defs[metric]
    gate["required"] = [key for key in gate["required"] if key not in ("target", "alert")]
    gate["if"] = {"properties": {"kind": {"const": "alert"}}, "required": ["kind"]}
    gate["else"] = {"required": ["target", "alert"]}
    _judge_keys_in_the_metric(gate, defs)
    _tags_required(defs)
    defs["TemplateUse"] = {
        "type": "object",
        "description": "a metric from a template: `use` names it, `args` fills its arguments, other keys override",
        "properties": {
            "use": {"type": "string"},
            "args": {"type": "object"},
            **copy.deepcopy(defs[metric]["properties"]),
        },
        "required": ["use"],
        "additionalProperties": False,
    }
    defs["GateSet"]["properties"]["metrics"]["items"] = {
        "anyOf": [{"$ref": f"#/$defs/{metric}"}, {"$ref": "#/$defs/TemplateUse"}]
    }
    schema["properties"]["include"] = {
        "type": "array",
        "items": {"type": "string"},
        "description": "files holding more templates, paths from the playbook's folder",
    }
    schema["properties"]["templates"] = {
        "type": "object",
        "description": "named gate metrics with arguments ({{args.NAME}}), written once and used by many gates",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "args": {"type": "object"},
                # the metric's own keys, each value free: any of them may be an argument ({{args.alert}})
                "metric": {"type": "object", "propertyNames": {"enum": sorted(defs[metric]["properties"])}},
            },
            "required": ["metric"],
            "additionalProperties": False,
        },
    }
    return schema


def _judge_keys_in_the_metric(gate: dict[str, Any], defs: dict[str, Any]) -> None:
    """A judge plugin's own keys are written in the metric, beside ``judge:`` (the model keeps them
    apart, in ``judge_config``): the schema shows them where they are written, requires the ones its
    judge requires, and refuses them beside another judge, as ``rollout validate`` does."""
    gate["properties"].pop("judge_config", None)
    metric_keys = set(gate["properties"])
    judged_by: dict[str, list[str]] = {}
    for plugin in JUDGES.plugins().values():
        own = plugin.config.model_json_schema(ref_template="#/$defs/{model}")
        for key, value in own.get("properties", {}).items():
            if key in metric_keys or key == JUDGES.tag:
                continue
            judged_by.setdefault(key, []).append(plugin.name)
            if key not in gate["properties"]:
                gate["properties"][key] = _with_references({**value, "description": f"judge: {plugin.name}"})
        defs.update({name: _with_references(model) for name, model in own.get("$defs", {}).items()})
        needed = [key for key in own.get("required", []) if key not in metric_keys and key != JUDGES.tag]
        if needed:
            chosen = {"properties": {JUDGES.tag: {"const": plugin.name}}, "required": [JUDGES.tag]}
            gate.setdefault("allOf", []).append({"if": chosen, "then": {"required": needed}})
    for key, names in judged_by.items():
        judge = {JUDGES.tag: {"enum": names}}
        gate.setdefault("allOf", []).append(
            {"if": {"required": [key]}, "then": {"properties": judge, "required": [JUDGES.tag]}}
        )


def _tags_required(defs: dict[str, Any]) -> None:
    """A plugin section without its tag is its group's default (``flag:`` without ``backend:`` is the
    envfile backend): every other member requires its tag, so exactly one member matches."""
    for group in GROUPS.values():
        for name, plugin in group.plugins().items():
            found = defs.get(plugin.config.__name__)
            if name != group.default and found is not None and group.tag not in found.get("required", []):
                found["required"] = [group.tag, *found.get("required", [])]


def environment_schema() -> dict[str, Any]:
    """The JSON Schema of an environment file (``environments/NAME.yaml``)."""
    schema = _widened(Environment, "rollout environment")
    # the loader reads each variable as text: `false`, `0` and an empty value are written as YAML says
    schema["properties"]["variables"]["additionalProperties"] = {"type": ["string", "number", "boolean", "null"]}
    return schema


def _widened(model: type[BaseModel], title: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    defs = schema.setdefault("$defs", {})
    for cls in _models(model):
        target = schema if cls is model else defs.get(cls.__name__)
        if target is not None:
            _add_other_names(cls, target)
    schema = _with_references(schema)
    schema["$defs"]["Reference"] = REFERENCE
    return {"$schema": DRAFT, **schema, "title": title}


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """``root`` and every model its fields reach."""
    found: list[type[BaseModel]] = []
    todo: list[Any] = [root]
    while todo:
        kind = todo.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            if kind in found:
                continue
            found.append(kind)
            todo += [field.annotation for field in kind.model_fields.values()]
        elif hasattr(kind, "members"):  # a plugin section: every registered config model
            todo += kind.members()
        else:
            origin = typing.get_origin(kind)
            if origin is not None or isinstance(kind, types.UnionType):
                todo += list(typing.get_args(kind))
    return found


def _add_other_names(cls: type[BaseModel], schema: dict[str, Any]) -> None:
    """A field that also accepts other names (``AliasChoices``) gets each one as a property too."""
    properties = schema.get("properties", {})
    for name, field in cls.model_fields.items():
        if not isinstance(field.validation_alias, AliasChoices) or name not in properties:
            continue
        for choice in field.validation_alias.choices:
            if isinstance(choice, str) and choice not in properties:
                properties[choice] = copy.deepcopy(properties[name])


def _with_references(node: Any) -> Any:
    """Every scalar that is not a fixed tag (``kind: ramp``) may also be written as ``${NAME}``."""
    if isinstance(node, list):
        return [_with_references(item) for item in node]
    if not isinstance(node, dict):
        return node
    widened = {
        key: (
            {name: _with_references(sub) for name, sub in value.items()}
            if key in ("properties", "$defs", "patternProperties")
            else _with_references(value)
            if key in ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems")
            else value
        )
        for key, value in node.items()
    }
    scalar = widened.get("type") in _SCALARS or (
        "enum" in widened or (widened.get("type") == "string" and "pattern" in widened)
    )
    if scalar and "const" not in widened:
        return {"anyOf": [widened, {"$ref": "#/$defs/Reference"}]}
    return widened
