"""Bad playbooks, on purpose: YAML bombs, loops, deep nesting, non-finite numbers, and a few hundred
seeded mutations of the shipped playbook. Every outcome is exit 0 or 2 with a one-line message,
never 70 (an internal error) and never a traceback."""

from __future__ import annotations

import contextlib
import io
import random
from pathlib import Path

import pytest

from rollout.cli import main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = (REPO / "playbooks" / "whatsapp.yaml").read_text()

VALID_HEAD = """\
version: 1
name: t
gates:
  g: {window: 30s, min_samples: 5, metrics: [{metric: success_rate, target: 95%, alert: 90%}]}
watch: {gate: g, interval: 1s}
phases:
  - name: production
    environment: production
    steps:
      - {kind: configure}
"""


def validate(path: Path) -> tuple[int, str]:
    """Run `rollout validate PATH` in this process; (exit code, stderr)."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(["validate", str(path)])
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
    return 0, err.getvalue()


def billion_laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return VALID_HEAD + "x-bomb:\n" + "\n".join("  " + line for line in lines) + "\n"


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("bomb.yaml", billion_laughs(8), "aliases expand"),
        ("loop.yaml", VALID_HEAD.replace("gates:\n  g:", "gates: &g\n  self: *g\n  g:"), "refers to the node it is in"),
        ("deep.yaml", VALID_HEAD + "x: " + "[" * 1000 + "]" * 1000 + "\n", "nested deeper than"),
        (
            "deep-map.yaml",
            VALID_HEAD + "".join(f"{'  ' * i}k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n",
            "nested deeper than",
        ),
    ],
)
def test_yaml_bombs_loops_and_deep_nesting_are_refused_quickly(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    code, err = validate(path)
    assert code == 2, err
    assert says in err and f"{path}:" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("value", [".nan", ".NaN", ".inf", "-.inf", "+.inf", ".Inf"])
@pytest.mark.parametrize("where", ["alert", "target"])
def test_non_finite_thresholds_are_refused(tmp_path, value, where):
    text = VALID_HEAD.replace(f"{where}: {'90%' if where == 'alert' else '95%'}", f"{where}: {value}")
    assert value in text
    path = tmp_path / "p.yaml"
    path.write_text(text)
    code, err = validate(path)
    assert code == 2 and f"{path}:4: gates.g.metrics.0.{where}:" in err and "finite" in err, err


def test_non_finite_durations_and_limits_are_refused(tmp_path):
    for text in (
        VALID_HEAD.replace("window: 30s", "window: .inf"),
        VALID_HEAD + "      - {kind: ramp, percentages: [10], hold: 1s, gate: g, max_hold: .inf}\n",
        VALID_HEAD + "      - {kind: load, rate: .nan, duration: 1s}\n",
    ):
        path = tmp_path / "p.yaml"
        path.write_text(text)
        code, err = validate(path)
        assert code == 2 and "finite" in err, err


NASTY = [
    ".nan",
    ".inf",
    "-1",
    "1e309",
    "~",
    "[]",
    "{}",
    '"x"',
    "*a",
    "&a x",
    "!!python/object/apply:os.system ['true']",
    "2026-13-45",
    "? [a]",
    "<<: *a",
    "x" * 5000,
    "é✓",
    "%",
    "100000000000000000000",
    "- - -",
    "{a: [b, {c: d}]}",
    "!!binary aGVsbG8=",
    "0x1F",
    "'unterminated",
    "a: b: c",
    "\t",
    "&b [*b]",
    "yes",
    "null",
    "!custom x",
]


def mutate(text: str, rng: random.Random) -> str:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(7)
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2 and ":" in lines[i]:
            key, _, _ = lines[i].partition(":")
            lines[i] = f"{key}: {rng.choice(NASTY)}"
        elif op == 3:
            lines[i] = ("  " + lines[i]) if rng.random() < 0.5 else lines[i][2:]
        elif op == 4:
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + rng.choice("{}[]:,&*!|>'\"#%@` -?\t") + lines[i][pos:]
        elif op == 5:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(i, (" " * rng.choice((0, 2, 4, 6))) + rng.choice(NASTY))
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_hundreds_of_mutated_playbooks_end_in_exit_0_or_2(tmp_path):
    rng = random.Random(20261125)
    outcomes = {0: 0, 2: 0}
    for case in range(400):
        path = tmp_path / f"case-{case}.yaml"
        path.write_text(mutate(SHIPPED, rng))
        code, err = validate(path)
        assert code in (0, 2), f"case {case} ended {code}: {err}\n--- playbook ---\n{path.read_text()}"
        assert "Traceback" not in err
        if code == 2:
            assert err.startswith("rollout: ") and len(err.strip().splitlines()) == 1, err
        outcomes[code] += 1
    assert outcomes[2] > 100  # the mutations do break most playbooks: the loop tests something
