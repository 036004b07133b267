"""The shipped playbook validates; a broken one gets one message with file, line and field path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rollout.playbook.load import load_playbook
from rollout.playbook.model import RampStep
from rollout.util.errors import PlaybookError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "playbooks" / "whatsapp.yaml"

GOOD = """\
version: 1
name: t
gates:
  g:
    window: 60s
    min_samples: 10
    metrics:
      - {metric: success_rate, target: 95%, alert: 90%}
watch: {gate: g, interval: 1s}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
      - kind: ramp
        percentages: [10, 50, 100]
        hold: 1m
        gate: g
"""


def test_shipped_playbook_encodes_the_seed_plan():
    book = load_playbook(SHIPPED, environ={})
    assert [p.name for p in book.phases] == ["dev", "staging", "production"]
    seed = book.gates["seed"]
    thresholds = {m.metric: (m.target, m.alert) for m in seed.metrics}
    assert thresholds == {
        "success_rate": (0.95, 0.90),
        "avg_latency_ms": (2000, 5000),
        "breaker_activations": (1, 3),
        "error_rate": (0.01, 0.05),
        # the seed's "no negative impact on booking flow performance": treatment vs control
        "booking_latency_ms": (50, 250),
        "booking_error_rate": (0.005, 0.02),
    }
    assert {m.metric for m in seed.metrics if m.kind == "compare"} == {"booking_latency_ms", "booking_error_rate"}
    ramp = next(s for s in book.phases[2].steps if isinstance(s, RampStep))
    assert ramp.percentages == [10, 25, 50, 100] and ramp.hold == 1800
    production_configure = next(s for s in book.phases[2].steps if s.kind == "configure")
    assert production_configure.set["WHATSAPP_NOTIFICATIONS_ENABLED"] == "false"
    kinds = {s.kind for p in book.phases for s in p.steps}
    assert {"configure", "smoke", "health", "scenario", "load", "gate", "ramp", "approve", "promote"} <= kinds
    promotions = [
        (s.source, s.target, s.require_evidence_from) for p in book.phases for s in p.steps if s.kind == "promote"
    ]
    assert promotions == [("feature/whatsapp-integration", "staging", None), ("staging", "main", "staging")]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


BROKEN = [
    # (replace this, with that, expected fragments)
    (
        "        hold: 1m\n",
        "        hold: 1m\n        colour: red\n",
        ["p.yaml:18:", "phases.0.steps.1.colour: unknown key"],
    ),
    (
        "      - {metric: success_rate, target: 95%, alert: 90%}",
        "      - {metric: success_rate, target: 95%, alert: 99%}",
        ["p.yaml:8:", "gates.g.metrics.0", "alert (0.99) must not be above target (0.95)"],
    ),
    ("        gate: g\n", "        gate: nope\n", ["p.yaml:18:", "phases.0.steps.1.gate: unknown gate set 'nope'"]),
    ("percentages: [10, 50, 100]", "percentages: [50, 10]", ["p.yaml:16:", "percentages must increase"]),
    ("percentages: [10, 50, 100]", "percentages: [10, 150]", ["phases.0.steps.1", "from 1 to 100"]),
    ("hold: 1m", "hold: soon", ["p.yaml:17:", "phases.0.steps.1.hold", "expected a duration"]),
    ("min_samples: 10", "min_samples: lots", ["p.yaml:6:", "gates.g.min_samples"]),
    (
        "      - kind: configure\n",
        "      - kind: teleport\n",
        ["p.yaml:14:", "phases.0.steps.0", "unknown kind 'teleport'"],
    ),
    ("      - kind: configure\n", "", ["p.yaml:14:", "a ramp step needs a configure step before it"]),
    ("name: t\n", "name: t\nname: u\n", ["p.yaml:3:", "name: duplicate key (first at line 2)"]),
    ("    window: 60s\n", "    window: [60s\n", ["p.yaml:", "invalid YAML"]),
    ("version: 1\n", "version: 2\n", ["p.yaml:1:", "version"]),
    (
        "watch: {gate: g, interval: 1s}\n",
        "watch: {gate: nope, interval: 1s}\n",
        ["watch.gate: unknown gate set 'nope'"],
    ),
    (
        "name: t\n",
        "name: t\nflag:\n  backend: unleash\n  url: http://127.0.0.1:4242\n",
        ["p.yaml:3:", "flag.token: required for the unleash backend", "flag.feature: required for the unleash backend"],
    ),
    (
        "name: t\n",
        "name: t\nflag: {backend: unleash, url: x, token: '${T}', feature: wa}\n",
        ["p.yaml:3:", "flag.url: required for the unleash backend: the server's address, http(s)://..."],
    ),
]


@pytest.mark.parametrize(("old", "new", "fragments"), BROKEN)
def test_broken_playbooks_name_file_line_and_field(tmp_path, old, new, fragments):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, environ={})
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert "\n" not in message


def test_watch_is_optional_and_ramps_then_evaluate_every_10s(tmp_path):
    book = load_playbook(write(tmp_path, GOOD.replace("watch: {gate: g, interval: 1s}\n", "")), environ={})
    assert book.watch is None and book.interval == 10.0
    assert load_playbook(write(tmp_path, GOOD), environ={}).interval == 1.0


@pytest.mark.parametrize(("count", "rate"), [("requests", "success_rate"), ("bookings", "booking_success_rate")])
def test_a_load_step_takes_its_new_names_and_the_old_ones(tmp_path, count, rate):
    load = f"      - {{kind: load, {count}: 20, concurrency: 2, expect: {{{rate}: 98%}}}}\n"
    book = load_playbook(
        write(tmp_path, GOOD.replace("      - kind: ramp\n", load + "      - kind: ramp\n")), environ={}
    )
    step = book.phases[0].steps[1]
    assert (step.kind, step.requests, step.expect.success_rate) == ("load", 20, 0.98)


def test_rollout_watch_without_a_watch_section_says_so(tmp_path):
    book = write(tmp_path, GOOD.replace("watch: {gate: g, interval: 1s}\n", ""))
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(
        f"name: production\nservice_url: http://127.0.0.1:9\nenv_file: {tmp_path / 'service.env'}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollout",
            "watch",
            "--env",
            "production",
            "--playbook",
            str(book),
            "--environments",
            str(tmp_path / "environments"),
            "--state",
            str(tmp_path / "s.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "has no watch section" in proc.stderr and "Traceback" not in proc.stderr


def test_interpolation_from_the_environment_with_line_on_a_missing_name(tmp_path):
    path = write(tmp_path, GOOD.replace("hold: 1m", "hold: ${HOLD}"))
    assert load_playbook(path, environ={"HOLD": "5s"}).phases[0].steps[1].hold == 5
    with pytest.raises(PlaybookError, match=r"p.yaml:17: phases.0.steps.1.hold: \$\{HOLD\} is not set"):
        load_playbook(path, environ={})


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(PlaybookError, match=r"p\.yaml:1: the file must hold a mapping"):
        load_playbook(write(tmp_path, "- just\n- a list\n"), environ={})
    with pytest.raises(PlaybookError, match="file not found"):
        load_playbook(tmp_path / "missing.yaml")


def test_cli_validate_prints_one_line_and_exits_2(tmp_path):
    path = write(tmp_path, GOOD.replace("        gate: g\n", "        gate: nope\n"))
    proc = subprocess.run([sys.executable, "-m", "rollout", "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown gate set 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "rollout", "validate", str(SHIPPED)], capture_output=True, text=True)
    assert proc.returncode == 0 and "valid playbook" in proc.stdout


PROVIDERS = """\
version: 1
name: t
providers:
  prom: {kind: prometheus, url: "http://127.0.0.1:9090", token: "${PROM_TOKEN}"}
  stats: {kind: http}
gates:
  g:
    window: 60s
    metrics:
METRICS
watch: {gate: g, interval: 1s}
phases:
  - name: production
    environment: production
    steps:
      - kind: configure
"""


@pytest.mark.parametrize(
    ("metrics", "says"),
    [
        (
            "      - {metric: errors, provider: nope, kind: rate, query: x, samples: y, target: 1%, alert: 5%}",
            ":10: gates.g.metrics.0.provider: unknown provider 'nope' (known: embedded, prom, stats)",
        ),
        (
            "      - {metric: errors, provider: prom, kind: rate, query: 'sum(x)', target: 1%, alert: 5%}",
            ":10: gates.g.metrics.0.samples: a rate needs a samples query",
        ),
        (
            "      - {metric: errors, provider: prom, query: 'sum(x)', target: 1, alert: 5}",
            ":10: gates.g.metrics.0.kind: required for a provider's metric",
        ),
        (
            "      - {metric: errors, provider: prom, kind: rate, query: 'sum(x)', samples: 'sum(y)', target: 1, alert: 5}",
            "thresholds are fractions from 0 to 1",
        ),
        (
            "      - {metric: errors, provider: stats, kind: gauge, query: 'sum(x)', target: 1, alert: 5}",
            ":10: gates.g.metrics.0.query: an http metric's query is {url: ..., value: field.path",
        ),
        (
            "      - {metric: p95_ms, provider: prom, kind: latency, query: {url: /x, value: v}, samples: 'n', target: 300, "
            "alert: 800}",
            ":10: gates.g.metrics.0.query: a prometheus metric's query is a PromQL string",
        ),
        (
            "      - {metric: queue, provider: prom, kind: gauge, query: 'q', target: 5, alert: 5}",
            "target equals alert: say which way is good with higher_is_better",
        ),
        (
            "      - {metric: restarts, provider: prom, kind: count, query: 'sum(r)', target: 1, alert: 3}",
            ":10: gates.g.metrics.0.samples: a count without samples counts as 1 sample, so restarts could never reach "
            "the 20 samples needed",
        ),
        (
            "      - {metric: nonsense, target: 1, alert: 2}",
            "gates.g.metrics.0.metric: 'nonsense' is not a built-in metric of the embedded service",
        ),
        (
            "      - {metric: errs, provider: stats, kind: compare, query: 'e{p=\"$cohort\"}', samples: 'n{p=\"$cohort\"}', "
            "target: 1%, alert: 5%}",
            ":10: gates.g.metrics.0.provider: compare reads a prometheus provider",
        ),
        (
            "      - {metric: errs, provider: prom, kind: compare, query: 'sum(e)', samples: 'sum(n)', target: 1%, alert: 5%}",
            ":10: gates.g.metrics.0.query: a provider's compare metric needs a PromQL query with $cohort",
        ),
        (
            "      - {metric: errs, provider: prom, kind: compare, query: 'e{p=\"$cohort\"}', samples: 'n{p=\"$cohort\"}', "
            "cohorts: {treatment: 'new\"}'}, target: 1%, alert: 5%}",
            "gates.g.metrics.0.cohorts.treatment",
        ),
    ],
)
def test_provider_metrics_are_validated_with_their_line(tmp_path, metrics, says):
    path = write(tmp_path, PROVIDERS.replace("METRICS", metrics))
    with pytest.raises(PlaybookError) as info:
        load_playbook(path, environ={})
    assert says in str(info.value)


def test_a_provider_token_stays_a_reference_until_used(tmp_path):
    metrics = "      - {metric: errors, provider: prom, kind: rate, query: 'a', samples: 'b', target: 1%, alert: 5%}"
    book = load_playbook(write(tmp_path, PROVIDERS.replace("METRICS", metrics)), environ={"PROM_TOKEN": "s3cret-xyz"})
    assert book.providers["prom"].token == "${PROM_TOKEN}"  # resolved only when a run uses it, then redacted
    assert book.gates["g"].metrics[0].higher is False and book.gates["g"].metrics[0].unit == "rate"
    literal = PROVIDERS.replace('token: "${PROM_TOKEN}"', "token: s3cret-xyz").replace("METRICS", metrics)
    with pytest.raises(PlaybookError, match=r":4: providers.prom.token: must be a reference like \$\{NAME\}"):
        load_playbook(write(tmp_path, literal), environ={})


def test_an_http_target_refuses_what_only_the_embedded_service_can_do(tmp_path):
    text = GOOD.replace("version: 1\n", "version: 1\ntarget: {kind: http, health: {url: /healthz}}\n")
    with pytest.raises(PlaybookError) as info:
        load_playbook(write(tmp_path, text), environ={})
    assert "gates.g.metrics.0.provider: success_rate is read from the embedded service" in str(info.value)
    text = GOOD.replace("version: 1\n", "version: 1\ntarget: {kind: http}\n")
    with pytest.raises(PlaybookError, match=r"target\.health: an http target needs a health probe"):
        load_playbook(write(tmp_path, text), environ={})


def test_validate_warns_of_no_read_back_whatever_backend_an_http_target_has(tmp_path):
    """An http target confirms a flag only through target.flag_state or flag.read: with any backend
    but postgres (the env file, a plugin's), every flag-off would be reported unconfirmed."""
    backend = "envfile"
    path = tmp_path / "shop.yaml"
    path.write_text(
        f"version: 1\nname: shop\ntarget: {{kind: http, health: {{url: /healthz}}}}\nflag: {{backend: {backend}}}\n"
        "providers: {p: {kind: http}}\n"
        "gates: {g: {window: 1m, metrics: [{metric: up, provider: p, kind: gauge, query: {url: /s, value: v},"
        " target: 1, alert: 0, min_samples: 1}]}}\n"
        "phases: [{name: production, environment: production, steps: [{kind: configure}, {kind: gate, gate: g}]}]\n"
    )
    warnings = load_playbook(path).warnings()
    assert [w for w in warnings if "neither flag.read nor target.flag_state" in w] == [
        f"flag: the {backend} backend has neither flag.read nor target.flag_state, so rollout cannot see the service "
        "apply the flag: every flag-off will be reported NOT confirmed (rollback exits 1); add one of them"
    ]
