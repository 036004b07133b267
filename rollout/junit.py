"""JUnit XML for CI: one test case per check and per gate metric, value and threshold in each failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout.gates import fmt
from rollout.util.outfile import write_output


def _case(suite: ET.Element, classname: str, name: str, seconds: float, failure: tuple[str, str, str] | None) -> None:
    case = ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")
    if failure is not None:
        kind, message, text = failure
        node = ET.SubElement(case, "failure", type=kind, message=message)
        node.text = text


def _finished(root: ET.Element, suite: ET.Element) -> str:
    """The suite's counts filled in, the whole document as text."""
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", "0")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def junit_xml(env: str, phase: str, steps: list[dict[str, Any]], started: float, commit: str | None) -> str:
    """Render the step results of one ``rollout gate`` run."""
    root = ET.Element("testsuites", name="rollout")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"rollout.{env}.{phase}",
        timestamp=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (("environment", env), ("phase", phase), ("commit", commit or "unknown")):
        ET.SubElement(props, "property", name=key, value=value)
    for step in steps:
        classname = f"{phase}.{step['step']}"
        for check in step.get("checks") or []:
            failure = None if check["ok"] else ("check", check["detail"][:500], check["detail"])
            _case(suite, classname, check["name"], check.get("duration_s", 0.0), failure)
        for metric in step.get("verdict") or []:
            unit = metric.get("unit")
            shown = fmt(metric["metric"], metric["value"], unit)
            message = (
                f"{metric['metric']} {shown}: target {fmt(metric['metric'], metric['target'], unit)}, alert "
                f"{fmt(metric['metric'], metric['alert'], unit)}, {metric['samples']} samples "
                f"(need {metric['min_samples']}), window {metric['window_seconds']:g}s"
            )
            failure = None if metric["verdict"] == "pass" else (metric["verdict"], message, metric["reason"])
            _case(suite, classname, metric["metric"], 0.0, failure)
        if not step.get("checks") and not step.get("verdict") and step["status"] != "done":
            _case(suite, classname, step["step"], 0.0, ("error", step["detail"][:500], step["detail"]))
    return _finished(root, suite)


def write_junit(path: Path | str, text: str) -> None:
    """Write the JUnit XML whole (see :func:`rollout.util.outfile.write_output`)."""
    write_output(path, text, "--junit")


def backtest_junit(env: str, candidate: str, runs: list[dict[str, Any]]) -> str:
    """One test case per replayed run: a failure when the candidate would have rolled back a healthy
    run (``would_roll_back_healthy``) or would not have rolled back a run that was (``missed_rollback``)."""
    root = ET.Element("testsuites", name="rollout")
    suite = ET.SubElement(root, "testsuite", name=f"rollout.backtest.{env}")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="candidate", value=candidate)
    for run in runs:
        failure = None
        if run["regressed"]:
            kind = "missed_rollback" if run["recorded"] == "rolled_back" else "would_roll_back_healthy"
            failure = (kind, run["summary"][:500], "\n".join([run["summary"], *run["notes"]]))
        started = datetime.fromtimestamp(run["started"], UTC).isoformat(timespec="seconds")
        _case(suite, f"backtest.{env}", f"run {run['run']} from {started} ({run['recorded']})", 0.0, failure)
    return _finished(root, suite)
