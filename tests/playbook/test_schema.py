"""``rollout schema`` (issue 28, item 5): the files as written validate against it, with a JSON Schema
validator from PyPI (``jsonschema``, draft-07 as editors use it), and it refuses the typos ``rollout
validate`` refuses."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from rollout.playbook.load import load_playbook
from rollout.playbook.schema import environment_schema, playbook_schema
from rollout.util.errors import RolloutError

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = jsonschema.Draft7Validator(playbook_schema())
ENVIRONMENT = jsonschema.Draft7Validator(environment_schema())


def written_playbooks() -> list[tuple[str, str]]:
    """The shipped playbook and every complete playbook in docs/ (as tests/test_architecture.py finds them)."""
    found = [("playbooks/whatsapp.yaml", (REPO / "playbooks" / "whatsapp.yaml").read_text())]
    for page in sorted((REPO / "docs").glob("*.md")):
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), flags=re.S):
            if re.search(r"^version:", block, flags=re.M) and re.search(r"^phases:", block, flags=re.M):
                found.append((f"docs/{page.name}", block))
    return found


PLAYBOOKS = written_playbooks()


class EditorLoader(yaml.SafeLoader):
    """YAML as an editor's language server reads it (YAML 1.2's core schema): ``2026-11-26`` is text,
    not a date, so what is checked is the JSON the schema speaks of."""


EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def as_written(text: str) -> Any:
    return yaml.load(text, Loader=EditorLoader)


def problems(validator: jsonschema.Draft7Validator, data: Any) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(data)]


def test_the_schemas_are_valid_draft_07_schemas():
    jsonschema.Draft7Validator.check_schema(playbook_schema())
    jsonschema.Draft7Validator.check_schema(environment_schema())
    assert playbook_schema()["$schema"] == "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize(("where", "text"), PLAYBOOKS, ids=[where for where, _ in PLAYBOOKS])
def test_the_shipped_playbook_and_the_docs_playbooks_validate_against_the_schema(where, text):
    assert problems(PLAYBOOK, as_written(text)) == [], where


def test_the_shipped_environments_validate_against_theirs():
    for path in sorted((REPO / "environments").glob("*.yaml")):
        assert problems(ENVIRONMENT, as_written(path.read_text())) == [], path


def test_every_model_refuses_unknown_keys_in_the_schema():
    defs = playbook_schema()["$defs"]
    free = {"Reference"}  # not a model: a string pattern
    # a model also written another way (a window in one line) is an anyOf: its object form is closed
    closed = {
        name
        for name, d in defs.items()
        if d.get("additionalProperties") is False
        or any(b.get("additionalProperties") is False for b in d.get("anyOf", []))
    }
    assert closed == set(defs) - free, set(defs) - free - closed


def _mappings(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [path, *(p for key, value in node.items() for p in _mappings(value, (*path, key)))]
    if isinstance(node, list):
        return [p for index, value in enumerate(node) for p in _mappings(value, (*path, index))]
    return []


#: mappings keyed by names defined elsewhere in the playbook (a phase's regions): the schema takes any
#: name, `validate` refuses one that is not there
KEYED_BY_NAMES = {"weights"}


@pytest.mark.slow
@pytest.mark.parametrize(("where", "text"), PLAYBOOKS, ids=[where for where, _ in PLAYBOOKS])
def test_a_typo_anywhere_is_refused_by_the_schema_exactly_where_validate_refuses_it(tmp_path, where, text):
    """A key no model knows, added to each mapping of the file in turn: the schema and ``rollout
    validate`` agree on every one (both refuse it, or both accept it where a mapping is free-form:
    a request body, expected JSON fields)."""
    data = as_written(text)
    refused = 0
    for path in _mappings(data):
        mutated = copy.deepcopy(data)
        node = mutated
        for key in path:
            node = node[key]
        node["retires"] = 3  # a typo of `retries`
        file = tmp_path / "typo.yaml"
        file.write_text(yaml.safe_dump(mutated))
        try:
            load_playbook(file, environ={})
            by_validate = False
        except RolloutError:
            by_validate = True
        by_schema = not PLAYBOOK.is_valid(mutated)
        if path and path[-1] in KEYED_BY_NAMES:  # keys are names from elsewhere in the file: only validate knows them
            assert by_validate, (where, path)
            continue
        assert by_schema == by_validate, (where, path, by_schema, by_validate)
        refused += by_schema
    assert refused >= 5, where


def test_the_schema_refuses_a_wrong_type_and_names_the_place():
    data = as_written((REPO / "playbooks" / "whatsapp.yaml").read_text())
    data["phases"][2]["steps"][5]["percentages"] = "ten"
    assert any("phases.2.steps.5" in p for p in problems(PLAYBOOK, data))


def test_rollout_schema_prints_them():
    from click.testing import CliRunner

    from rollout.cli import cli

    done = CliRunner().invoke(cli, ["schema"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == playbook_schema()
    assert json.loads(CliRunner().invoke(cli, ["schema", "environment"]).output) == environment_schema()
