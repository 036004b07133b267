"""The plugin registry (rollout/playbook/plugins.py): every built-in loads through it with its name
and tag agreeing, a plugin that cannot load or disagrees is one line naming it, and the playbook's
errors for a plugin section name the key as written (the union's tag taken out of the path)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError

from rollout.engine.steps import KINDS
from rollout.playbook.load import load_playbook
from rollout.playbook.model import MetricGate
from rollout.playbook.plugins import FLAGS, GROUPS, JUDGES, PROVIDERS, STEPS, TARGETS, Group, Plugin, PluginError
from rollout.util.errors import PlaybookError


def test_every_built_in_loads_through_its_group():
    assert list(FLAGS.plugins()) == ["envfile", "http", "command", "postgres", "unleash"]
    assert list(PROVIDERS.plugins()) == ["prometheus", "http", "alertmanager"]
    assert list(TARGETS.plugins()) == ["embedded", "http"]
    assert list(JUDGES.plugins()) == ["mean", "rank"]
    assert set(KINDS) == set(STEPS.names()) >= {"configure", "ramp", "gate", "promote"}
    for group in GROUPS.values():
        for name, plugin in group.plugins().items():
            assert plugin.name == name and plugin.config.model_fields[group.tag].annotation == Literal[name]


class _Keys(BaseModel):
    backend: Literal["other"] = "other"


class _Mislabelled(Plugin):
    name = "mine"
    config = _Keys


def test_a_plugin_that_cannot_load_or_disagrees_with_its_tag_is_one_line_naming_it():
    broken = Group("flags", "backend", {"gone": "rollout_no_such_module:Backend"})
    with pytest.raises(PluginError, match=r"flags plugin 'gone' cannot be loaded: ModuleNotFoundError"):
        broken.plugins()
    mislabelled = Group("flags", "backend", {"mine": f"{__name__}:_Mislabelled"})
    with pytest.raises(PluginError, match=r"its name and its config's backend must both be 'mine'"):
        mislabelled.plugins()
    with pytest.raises(
        PluginError, match=r"unknown backend 'nope' \(known: envfile, http, command, postgres, unleash\)"
    ):
        FLAGS.get("nope")


def test_an_unknown_judge_names_the_known_ones():
    with pytest.raises(ValidationError, match=r"unknown judge 'median' \(known: mean, rank\)"):
        MetricGate.model_validate({"metric": "x", "kind": "compare", "target": 0, "alert": 1, "judge": "median"})


def test_judge_config_written_as_such_holds_the_metrics_judges_keys():
    metric = {"metric": "x", "provider": "p", "kind": "compare", "target": 0, "alert": 1, "judge": "mean"}
    metric |= {"query": 'errors{v="$cohort"}', "samples": 'requests{v="$cohort"}'}
    # the built-in judges add no keys: another judge's keys, or any, are refused, not ignored
    with pytest.raises(ValidationError, match=r"judge_config holds judge rank keys; judge mean adds no keys"):
        MetricGate.model_validate({**metric, "judge_config": {"judge": "rank"}})
    # what a dump holds validates again to the same metric
    ranked = MetricGate.model_validate({**metric, "judge": "rank", "step": 30})
    assert ranked.judge_config is None and MetricGate.model_validate(ranked.model_dump()) == ranked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a plugin's own key, written where the tag is the default (no backend: written)
        ("flag: {variable: X, url: /f}\n", "p.yaml:3: flag.url: unknown key"),
        ("flag:\n  backend: postgres\n", "p.yaml:3: flag.database: required for the postgres backend"),
        ("target: {kind: lambda}\n", "p.yaml:3: target: unknown kind 'lambda'; expected one of 'embedded', 'http'"),
        ("providers: {p: {kind: prometheus, url: 'ftp://x'}}\n", "p.yaml:3: providers.p.url: String should match"),
    ],
)
def test_a_plugin_section_error_names_the_key_as_written(tmp_path, text, expected):
    book = tmp_path / "p.yaml"
    body = "gates: {g: {window: 1m, metrics: [{metric: success_rate, target: 0.9, alert: 0.8}]}}\n"
    steps = "phases: [{name: p, environment: production, steps: [{kind: approve}]}]\n"
    book.write_text(f"version: 1\nname: t\n{text}{body}{steps}")
    with pytest.raises(PlaybookError) as refused:
        load_playbook(book)
    assert expected in str(refused.value)
