"""Bad input refused at the door: includes of devices, FIFOs and huge files; Unleash names Unleash
would refuse; latencies no measurement can be (a provider answering -1e308, Infinity or a negative
time) as reading errors, never a pass; and no Infinity or NaN in any JSON rollout prints."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rollout.checks.client import ServiceClient
from rollout.engine.state import StateStore
from rollout.gates import FAIL, HOLD, PASS, StepCounts, judge_readings
from rollout.playbook.load import load_playbook
from rollout.providers import MetricSources
from tests.playbook.test_playbook_fuzz import VALID_HEAD, validate
from tests.support.hostile import Hostile, json_answer

# --- includes --------------------------------------------------------------------------------------


def with_include(tmp: Path, target: str) -> Path:
    book = tmp / "p.yaml"
    book.write_text(f"include: ['{target}']\n" + VALID_HEAD)
    return book


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "folder"])
def test_an_include_is_only_ever_a_regular_file(tmp_path, target):
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")  # nothing ever writes it: reading it would wait for ever
    if target == "folder":
        (tmp_path / "folder").mkdir()
    result: list[tuple[int, str]] = []
    reader = threading.Thread(target=lambda: result.append(validate(with_include(tmp_path, target))), daemon=True)
    started = time.monotonic()
    reader.start()
    reader.join(10)
    assert result, f"validate did not return within {time.monotonic() - started:.0f}s (include of {target})"
    [(code, err)] = result
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"p.yaml:1: include.0: {tmp_path / target if not target.startswith('/') else target}" in err
    assert "not a regular file" in err


def test_a_huge_include_is_refused_by_its_size_and_a_large_one_without_aliases_not_blamed_on_aliases(tmp_path):
    (tmp_path / "huge.yaml").write_text("templates: {}\n# " + "x" * (2 << 20) + "\n")
    code, err = validate(with_include(tmp_path, "huge.yaml"))
    assert code == 2 and "larger than 1 MiB" in err, err
    many = "templates:\n  t:\n    metric: {metric: success_rate, target: 95%, alert: 90%}\n" + "".join(
        f"x{i}: [{', '.join(['1'] * 10)}]\n" for i in range(3000)
    )
    (tmp_path / "many.yaml").write_text(many)
    code, err = validate(with_include(tmp_path, "many.yaml"))
    assert code == 2 and "holds more than 20000 values" in err and "alias" not in err, err


# --- Unleash names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"), [("feature", ".."), ("feature", "."), ("feature", "a/b"), ("project", "..")]
)
def test_a_name_unleash_would_refuse_is_refused_with_its_line(tmp_path, field, value):
    flag = {"feature": "wa", "project": "default", field: value}
    book = tmp_path / "p.yaml"
    book.write_text(
        VALID_HEAD.replace(
            "gates:",
            f"flag: {{backend: unleash, url: 'http://127.0.0.1:4242', token: '${{T}}',\n"
            f"       feature: '{flag['feature']}', project: '{flag['project']}'}}\ngates:",
            1,
        )
    )
    code, err = validate(book)
    assert code == 2, err
    assert f"p.yaml:4: flag.{field}: '{value}' is not a name Unleash accepts" in err, err


# --- latencies no measurement can be ------------------------------------------------------------------


def prom_playbook(url: str, window: str, metrics: str) -> str:
    """A playbook whose gate ``g`` (over ``window``) holds ``metrics`` (YAML list items) read from a
    Prometheus ``prom`` at ``url``."""
    return (
        "version: 1\nname: p\ntarget: {kind: http, health: {url: /healthz}}\n"
        f"providers:\n  prom: {{kind: prometheus, url: '{url}'}}\n"
        f"gates:\n  g:\n    window: {window}\n    min_samples: 2\n    metrics:\n{metrics}"
        "phases:\n  - name: production\n    environment: production\n    steps:\n"
        '      - {kind: configure, set: {WHATSAPP_NOTIFICATIONS_ENABLED: "false"}}\n'
    )


IMPOSSIBLE = """\
      - {metric: delay_ms, provider: prom, kind: compare, judge: rank, step: 1s, error_limit: 2,
          query: 'latency{cohort="$cohort"}', target: 100, alert: 300}
      - {metric: p95_ms, provider: prom, kind: latency, query: 'p95', samples: 'n', target: 100, alert: 300,
          error_limit: 2}
"""


def matrix(value: str) -> Any:
    return json_answer(
        {"status": "success", "data": {"resultType": "matrix", "result": [{"values": [[1, value], [2, value]]}]}}
    )


def vector(value: str) -> Any:
    return json_answer({"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, value]}]}})


@pytest.fixture
def prometheus():
    server = Hostile()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("treatment", "control", "p95"),
    [("-1e308", "1e308", "-5"), ("-Inf", "+Inf", "+Inf"), ("-20", "40", "1e12")],
    ids=["huge", "infinite", "negative"],
)
def test_latencies_no_measurement_can_be_are_reading_errors_never_a_pass(tmp_path, prometheus, treatment, control, p95):
    # each cohort its own series, as the Prometheus answered: the treatment -1e308, the control 1e308
    prometheus.on("GET /api/v1/query_range", lambda path, _: matrix(treatment if "treatment" in path else control))
    prometheus.on("GET /api/v1/query", lambda path, _: vector(p95))
    book = tmp_path / "p.yaml"
    book.write_text(prom_playbook(prometheus.url, "1m", IMPOSSIBLE))
    playbook = load_playbook(book)
    service = ServiceClient(prometheus.url)
    sources = MetricSources.build(playbook, service, lambda raw: raw)
    gates, counts = playbook.gates["g"], StepCounts()
    try:
        verdicts = []
        for _ in range(2):
            verdict = judge_readings(gates, sources.read(gates, 1000.0, 10), 60.0, counts)
            verdicts.append(verdict)
    finally:
        sources.close()
        service.close()
    for verdict in verdicts:
        assert verdict.verdict == HOLD, verdict.summary
        for m in verdict.metrics:
            assert m.errored and m.verdict == HOLD and m.value is None, m
            assert "which no measurement is" in m.reason, m.reason
    # counted as provider errors: at error_limit the step stops for a person
    assert verdicts[-1].stop and "error_limit" in verdicts[-1].stop
    assert PASS not in {m.verdict for v in verdicts for m in v.metrics} and FAIL not in {v.verdict for v in verdicts}


def test_no_infinity_or_nan_reaches_the_record_or_any_json_printed(tmp_path):
    state = StateStore(tmp_path / "state.db")
    try:
        metrics = [{"metric": "delay_ms", "value": float("-inf"), "target": 100, "alert": float("nan"), "samples": 3}]
        state.record_verdict("production", 1.0, "production", "ramp", 10, "hold", "s", metrics, None, float("inf"))
        state.audit("production", "note", 2.0, shift=float("inf"))
        stored = state.verdicts("production")[0]["metrics"][0]
        assert stored["value"] is None and stored["alert"] is None
    finally:
        state.close()

    def strict(text: str) -> Any:
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON output"))

    raw = (tmp_path / "state.db").read_bytes()
    assert b"Infinity" not in raw and b"NaN" not in raw
    from click.testing import CliRunner

    from rollout.cli.main import cli

    for args in (["history", "--env", "production", "--json"], ["status", "--json"]):
        result = CliRunner().invoke(cli, [*args, "--state", str(tmp_path / "state.db"), "--playbook", "none.yaml"])
        assert result.exit_code == 0, result.output
        strict(result.output)
