"""Every complete playbook and environment file in docs/playbook.md validates, as a newcomer copies it."""

from __future__ import annotations

import re
from pathlib import Path

from rollout.playbook.environments import load_environment
from rollout.playbook.load import load_playbook

DOC = Path(__file__).parents[2] / "docs" / "playbook.md"


def blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)


def test_every_complete_playbook_and_environment_in_the_reference_validates(tmp_path):
    playbooks = [b for b in blocks() if b.startswith("version: 1\n")]
    environments = [b for b in blocks() if b.startswith("name: ")]
    assert len(playbooks) >= 4 and environments
    for index, text in enumerate(playbooks):
        book = tmp_path / f"p{index}.yaml"
        book.write_text(text)
        load_playbook(book, environ={})
    for text in environments:
        name = text.split("\n", 1)[0].removeprefix("name: ").strip()
        folder = tmp_path / "environments"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.yaml").write_text(text)
        load_environment(name, folder)


def test_the_examples_use_each_new_key():
    text = "".join(blocks())
    for key in (
        "windows:",
        "freeze:",
        "start_at:",
        "cutoff:",
        "on_guardrail:",
        "on_srm:",
        "on_no_traffic:",
        "no_traffic_grace:",
        "kind: alert",
        "alertname:",
        "matchers:",
        "kind: alertmanager",
        "preflight: true",
    ):
        assert key in text, key
