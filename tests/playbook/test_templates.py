"""Metric templates with arguments, inline and from included files: expanded before validation, and
every problem named at the template's line and the use's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rollout.playbook.load import load_playbook
from rollout.util.errors import PlaybookError

SHARED = """\
templates:
  error_rate:
    args: {alert: 5%, window: null}
    metric:
      metric: error_rate
      target: 1%
      alert: "{{args.alert}}"
      window: "{{args.window}}"
"""

PLAYBOOK = """\
version: 1
name: t
include: [shared/slo.yaml]
templates:
  success:
    args: {target: 95%}
    metric: {metric: success_rate, target: "{{args.target}}", alert: 90%}
gates:
  g:
    window: 60s
    min_samples: 10
    metrics:
      - use: success
      - {use: error_rate, args: {window: 10m}}
      - {use: error_rate, args: {window: 1h, alert: 3%}, role: shadow}
phases:
  - name: production
    environment: production
    steps:
      - {kind: configure, set: {WHATSAPP_NOTIFICATIONS_ENABLED: "false"}}
      - {kind: ramp, percentages: [10, 50, 100], hold: 1m, gate: g}
"""


def write(tmp_path: Path, playbook: str = PLAYBOOK, shared: str = SHARED) -> Path:
    (tmp_path / "shared").mkdir(exist_ok=True)
    (tmp_path / "shared" / "slo.yaml").write_text(shared)
    path = tmp_path / "p.yaml"
    path.write_text(playbook)
    return path


def problem(path: Path) -> str:
    with pytest.raises(PlaybookError) as caught:
        load_playbook(path, environ={})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_templates_expand_with_their_arguments_defaults_and_overrides(tmp_path):
    book = load_playbook(write(tmp_path), environ={})
    success, errors, shadow = book.gates["g"].metrics
    assert (success.metric, success.target, success.alert) == ("success_rate", 0.95, 0.90)
    assert (errors.metric, errors.alert, errors.window, errors.role) == ("error_rate", 0.05, 600, "guardrail")
    assert (shadow.alert, shadow.window, shadow.role) == (0.03, 3600, "shadow")


def test_a_bad_value_from_a_template_names_the_template_line_and_the_use(tmp_path):
    path = write(tmp_path, PLAYBOOK.replace("args: {window: 10m}", "args: {window: 10m, alert: 0.5%}"))
    message = problem(path)
    # alert 0.5 % is below the target 1 %: the metric as a whole is wrong, at its use and its template
    assert re.search(r"p\.yaml:14 \(use: error_rate; template at .*shared/slo\.yaml:2\): gates\.g\.metrics\.1", message)
    path = write(tmp_path, PLAYBOOK.replace("args: {window: 10m}", "args: {window: soon}"))
    message = problem(path)
    assert re.search(
        r"shared/slo\.yaml:8 \(template error_rate, used at .*p\.yaml:14\): gates\.g\.metrics\.1\.window", message
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("- use: success\n", "- use: nope\n", r"p\.yaml:13: gates\.g\.metrics\.0\.use: unknown template 'nope'"),
        (
            "args: {window: 10m}",
            "args: {}",
            r"p\.yaml:14: gates\.g\.metrics\.1: template 'error_rate' \(.*slo\.yaml:2\) needs args\.window",
        ),
        (
            "args: {window: 10m}",
            "args: {window: 10m, colour: red}",
            r"p\.yaml:14: gates\.g\.metrics\.1\.args\.colour: template 'error_rate' .* takes no such argument \(it takes: alert, window\)",
        ),
        (
            'target: "{{args.target}}"',
            'target: "{{args.goal}}"',
            r"p\.yaml:5: templates\.success: uses args\.goal but does not declare it",
        ),
        (
            "templates:\n  success:",
            "templates:\n  error_rate:",
            r"template 'error_rate' is also defined at .*slo\.yaml:2",
        ),
        ("include: [shared/slo.yaml]", "include: [shared/none.yaml]", r"shared/none\.yaml: file not found"),
    ],
)
def test_template_mistakes_are_one_line_with_the_place(tmp_path, old, new, expected):
    assert old in PLAYBOOK
    assert re.search(expected, problem(write(tmp_path, PLAYBOOK.replace(old, new)))), problem(
        write(tmp_path, PLAYBOOK.replace(old, new))
    )


def test_the_shipped_playbook_writes_the_seed_thresholds_once():
    shipped = Path(__file__).resolve().parents[2] / "playbooks" / "whatsapp.yaml"
    text = shipped.read_text()
    assert text.count("target: 95%") == 1 and text.count("use: seed_success_rate") == 2
    book = load_playbook(shipped, environ={})
    for gate in ("seed", "preproduction"):
        success = next(m for m in book.gates[gate].metrics if m.metric == "success_rate")
        assert (success.target, success.alert) == (0.95, 0.90)
