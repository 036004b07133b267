"""The wave keys of a phase: every key validated with its file and line, one-environment phases as
before, and the complete example of docs/playbook.md validated as a newcomer copies it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rollout.playbook.load import load_playbook
from rollout.util.errors import PlaybookError

DOC = Path(__file__).parents[2] / "docs" / "playbook.md"

WAVED = """\
version: 1
name: regions
gates:
  g:
    window: 60s
    metrics:
      - {metric: success_rate, target: 95%, alert: 90%}
phases:
  - name: staging
    environment: staging
    steps:
      - kind: configure
  - name: production
    waves:
      - environments: [eu-west]
      - environments: [us-east, ap-south]
        after: 30m
    weights: {eu-west: 50, us-east: 30, ap-south: 20}
    max_exposure: 30%
    on_failure: all_regions
    steps:
      - kind: configure
      - {kind: ramp, percentages: [10, 50, 100], hold: 30m, gate: g}
"""


def load(tmp_path: Path, text: str):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_playbook(path, environ={})


def problem(tmp_path: Path, text: str) -> str:
    with pytest.raises(PlaybookError) as caught:
        load(tmp_path, text)
    return str(caught.value)


def test_a_phase_in_waves_names_its_regions_and_each_is_found_by_phase_for(tmp_path):
    book = load(tmp_path, WAVED)
    staging, production = book.phases
    assert staging.environments == ["staging"] and not staging.waved and staging.environment == "staging"
    assert production.environment is None and production.waved
    assert production.environments == ["eu-west", "us-east", "ap-south"]
    assert [book.phase_for(r) for r in ("eu-west", "us-east", "ap-south")] == [production] * 3
    assert book.phase_for("staging") is staging and book.phase_for("nowhere") is None
    assert production.max_exposure == pytest.approx(0.3)
    assert [w.after for w in production.waves] == [None, 1800]
    assert production.weight("us-east") == 30 and production.wave_of("ap-south") == 1
    assert production.failure_policy == "all_regions"
    assert production.wave_words() == "eu-west, then after 30m us-east + ap-south"


def test_defaults_equal_weights_and_all_regions(tmp_path):
    text = WAVED.replace("    weights: {eu-west: 50, us-east: 30, ap-south: 20}\n", "").replace(
        "    on_failure: all_regions\n", ""
    )
    production = load(tmp_path, text).phases[1]
    assert {production.weight(r) for r in production.regions} == {1.0}
    assert production.on_failure is None and production.failure_policy == "all_regions"


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ("    on_failure: all_regions", "    on_failure: everywhere", ":20: phases.1.on_failure: Input should be"),
        ("        after: 30m\n", "", ":16: phases.1.waves.1.after: required: how long every region of wave 1"),
        (
            "      - environments: [eu-west]\n",
            "      - environments: [eu-west]\n        after: 5m\n",
            ":16: phases.1.waves.0.after: the first wave starts with the phase",
        ),
        ("[us-east, ap-south]", "[us-east, eu-west]", ":16: phases.1.waves.1.environments.1: region 'eu-west' is"),
        ("[us-east, ap-south]", "[us-east, Asia]", ":16: phases.1.waves.1.environments.1: 'Asia': a region is"),
        (
            "    weights: {eu-west: 50, us-east: 30, ap-south: 20}",
            "    weights: {eu-west: 50, us-east: 30}",
            ":18: phases.1.weights: no weight for ap-south",
        ),
        ("ap-south: 20}", "ap-south: 0}", ":18: phases.1.weights.ap-south: a weight is a positive number"),
        ("ap-south: 20}", "ap-south: 20, mars: 1}", ":18: phases.1.weights.mars: 'mars' is not a region of this phase"),
        (
            "    max_exposure: 30%",
            "    max_exposure: 130%",
            ":19: phases.1.max_exposure: a share of the customers above 0%",
        ),
        (
            "    max_exposure: 30%",
            "    max_exposure: lots",
            ":19: phases.1.max_exposure: expected a number or a percentage",
        ),
        (
            "  - name: production\n",
            "  - name: production\n    environment: prod\n",
            ":14: phases.1.environment: give environment (one) or waves",
        ),
        ("    environment: staging\n", "", ":9: phases.0: required: environment (where the phase runs) or waves"),
        (
            "    environment: staging\n",
            "    environment: eu-west\n",
            ":15: phases.1.waves.0.environments.0: environment 'eu-west' has two phases",
        ),
        (
            "    environment: staging\n",
            "    environment: staging\n    max_exposure: 10%\n",
            ":11: phases.0.max_exposure: only for a phase with waves",
        ),
        (
            "      - {kind: ramp, percentages: [10, 50, 100], hold: 30m, gate: g}\n",
            "",
            ":21: phases.1.steps: a phase with waves needs a ramp step",
        ),
        ("        after: 30m\n", "        after: 30m\n        size: 3\n", ":18: phases.1.waves.1.size: unknown key"),
    ],
)
def test_every_wave_key_is_checked_with_its_file_and_line(tmp_path, old, new, said):
    assert old in WAVED
    message = problem(tmp_path, WAVED.replace(old, new))
    assert f"{tmp_path / 'p.yaml'}{said}" in message, message
    assert "\n" not in message


def validate(book: Path, capsys) -> tuple[int, str, str]:
    """``rollout validate BOOK`` in this process."""
    from rollout.cli.main import main

    with pytest.raises(SystemExit) as ended:
        main(["validate", str(book)])
    said = capsys.readouterr()
    return int(ended.value.code or 0), said.out, said.err


def test_validate_says_the_waves_and_warns_when_the_first_wave_alone_passes_the_budget(tmp_path, capsys):
    book = tmp_path / "p.yaml"
    book.write_text(WAVED)
    code, out, err = validate(book, capsys)
    assert code == 0, err
    assert "production (waves: eu-west, then after 30m us-east + ap-south): 2 steps" in out
    assert "staging (environment staging): 1 steps" in out
    assert "wave 1 alone exposes 50% of the customers at 100%, over max_exposure 30%" in err
    book.write_text(WAVED.replace("eu-west: 50", "eu-west: 20"))
    code, _, err = validate(book, capsys)
    assert code == 0 and "warning" not in err


def test_the_reference_shows_every_wave_key_in_a_complete_example_that_validates(tmp_path):
    examples = [b for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S) if b.startswith("version: 1\n")]
    waved = [b for b in examples if "waves:" in b]
    assert waved, "docs/playbook.md has no complete example with waves"
    for key in ("waves:", "environments:", "after:", "weights:", "max_exposure:", "on_failure:"):
        assert any(key in b for b in waved), key
    for index, text in enumerate(waved):
        book = load(tmp_path / f"{index}" if (tmp_path / f"{index}").mkdir() is None else tmp_path, text)
        assert any(p.waved for p in book.phases)
