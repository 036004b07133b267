"""Every gate example the docs show goes through ``rollout validate``, as a reader would paste it.

Whole playbooks (a block with ``version:`` and ``phases:``) are validated as written by
``tests/test_architecture.py``. This file takes the parts a reader pastes into a playbook of their
own, by a rule:

- a block that is a YAML **list of metrics** (every item a mapping with ``metric:``) goes in as the
  metrics of one gate;
- a block whose top level is only **``gates:``** goes in as the playbook's gates, unless one of its
  metric lists holds a placeholder (``metrics: [...]``) rather than metrics;

both into a playbook that has what they may refer to: a ``prom`` Prometheus provider and the
embedded target. Every other block (an environment file, a ``flag:``, ``notify:`` or ``target:``
section, a Prometheus scrape config) is a fragment of another kind and is skipped.
"""

from __future__ import annotations

import copy
import re

import pytest
import yaml

from tests.playbook.test_playbook_fuzz import validate
from tests.test_architecture import REPO

SKELETON = {
    "version": 1,
    "name": "docs-example",
    "providers": {"prom": {"kind": "prometheus", "url": "http://127.0.0.1:9090"}},
    "phases": [
        {
            "name": "production",
            "environment": "production",
            "steps": [{"kind": "configure"}, {"kind": "gate", "gate": None}],
        }
    ],
}


def _is_metric_list(data: object) -> bool:
    return isinstance(data, list) and bool(data) and all(isinstance(m, dict) and "metric" in m for m in data)


def doc_gate_examples() -> list[tuple[str, dict]]:
    """(``page:line``, the gates it shows) for each block the rule above takes."""
    found = []
    for page in sorted((REPO / "docs").glob("*.md")):
        text = page.read_text()
        for match in re.finditer(r"```yaml\n(.*?)```", text, flags=re.S):
            where = f"{page.name}:{text[: match.start()].count(chr(10)) + 1}"
            data = yaml.safe_load(match.group(1))
            if _is_metric_list(data):
                found.append((where, {"g": {"window": "5m", "metrics": data}}))
            elif isinstance(data, dict) and set(data) == {"gates"}:
                gates = data["gates"]
                if all(_is_metric_list(g.get("metrics")) for g in gates.values()):
                    found.append((where, gates))
    return found


@pytest.mark.parametrize(("where", "gates"), doc_gate_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_gate_example_the_docs_show_validates(tmp_path, where, gates):
    book = {**copy.deepcopy(SKELETON), "gates": gates}
    book["phases"][0]["steps"][1]["gate"] = next(iter(gates))
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(book, sort_keys=False))
    code, err = validate(path)
    assert code == 0, f"{where}: {err}"


def test_the_rule_takes_the_documented_prometheus_rank_judge():
    shown = [gates for where, gates in doc_gate_examples() if where.startswith("gates.md")]
    ranked = [m for gates in shown for g in gates.values() for m in g["metrics"] if m.get("judge") == "rank"]
    assert any(m.get("provider") == "prom" for m in ranked), "the rank judge from Prometheus is no longer in the docs"
    assert len(doc_gate_examples()) >= 5
