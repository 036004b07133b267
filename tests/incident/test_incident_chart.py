"""Pictures in incident reports: the SVG beside the Markdown report, and the HTML report with it inline."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from rollout.cli import cli
from tests.engine.test_engine import world  # noqa: F401 - fixture


@pytest.mark.slow
def test_a_breach_report_has_its_timeline_chart(world, sandbox, tmp_path, monkeypatch):  # noqa: F811
    w = world()
    w.breach_at(25)
    assert w.advance().status == "rolled_back"
    [written] = w.audit("incident_report")
    report = Path(written["detail"]["path"])
    chart = report.with_suffix(".svg")
    assert f"]({chart.name})" in report.read_text()
    svg = ET.parse(chart).getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    [off] = w.audit("flag_off")
    failing = [m for m in off["detail"]["verdict"]["metrics"] if m["verdict"] == "fail"]
    assert failing and "flag off" in texts and "cohort %" in texts
    for metric in failing:  # a panel per failing metric, with its alert line
        assert metric["metric"] in texts, repr(texts)
    assert any(t and t.startswith("alert ") for t in texts) and any(t and t.endswith(" samples") for t in texts)
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}path"))) >= 2  # the percentage and the metric
    # the HTML report carries the same picture inline, and nothing of it needs the network
    monkeypatch.chdir(w.tmp)
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli,
        [
            "incident",
            "--env",
            "production",
            "--playbook",
            str(w.playbook),
            "--environments",
            str(w.tmp / "environments"),
            "--state",
            str(w.project.state_path),
            "--format",
            "html",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert (
        html.startswith("<!doctype html>")
        and "<svg" in html
        and "http://"
        not in html.replace('xmlns="http://www.w3.org/2000/svg"', "").split("<h2>Configuration in force</h2>")[0]
    )
