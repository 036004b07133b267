"""``rollout init`` (issue 28, item 4): a first playbook for your own service, its gates proposed from
what a real Prometheus scrapes from a small exporter made here, each query run once, files that
``rollout validate`` passes, nothing overwritten without ``--force``."""

from __future__ import annotations

import json
import os
import pty
import random
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from rollout.playbook.load import load_playbook
from rollout.playbook.scaffold import MODELINE
from rollout.providers.discover import Family, propose
from rollout.util.serving import free_port
from tests.support import inprocess
from tests.support.prometheus import Prometheus
from tests.support.standin import TOKEN, StandIn

ROLLOUT = str(Path(sys.executable).parent / "rollout")


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}
    return inprocess.run(args, cwd=cwd, timeout=120, env={**environ, **env})


class Exporter:
    """A shop's metrics, served by prometheus-client: requests by code and variant (new fails more
    often than old), a latency histogram in seconds, and a gauge that is neither; traffic keeps flowing
    until :meth:`close`."""

    def __init__(self) -> None:
        registry = CollectorRegistry()
        self.requests = Counter("shop_http_requests", "HTTP requests", ["code", "variant"], registry=registry)
        self.latency = Histogram("shop_request_duration_seconds", "Request duration", ["variant"], registry=registry)
        Gauge("shop_queue_depth", "Jobs waiting", registry=registry).set(3)
        self.port = free_port()
        self.server, _ = start_http_server(self.port, addr="127.0.0.1", registry=registry)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._traffic, daemon=True)
        self._thread.start()

    def _traffic(self) -> None:
        rng = random.Random(11)
        while not self._stop.wait(0.005):
            variant = "new" if rng.random() < 0.3 else "old"
            failed = rng.random() < (0.04 if variant == "new" else 0.01)
            self.requests.labels("500" if failed else "200", variant).inc()
            self.latency.labels(variant).observe(rng.uniform(0.02, 0.12))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_init_proposes_gates_from_a_real_prometheus_and_writes_files_that_validate(tmp_path):
    exporter = Exporter()
    service = StandIn()
    prometheus = None
    try:
        prometheus = Prometheus(tmp_path / "prom", [f"127.0.0.1:{exporter.port}"])
        # two scrapes at least, so increase() has something to say
        prometheus.wait_for("sum(increase(shop_http_requests_total[1m])) > 0")
        work = tmp_path / "project"
        work.mkdir()
        args = [
            "init",
            "--service-url",
            service.url,
            "--flag-backend",
            "http",
            "--flag-url",
            "/admin/flag",
            "--flag-token-env",
            "SHOP_ADMIN_TOKEN",
            "--prometheus",
            prometheus.url,
            "--name",
            "shop",
            "--environment",
            "staging",
            "--environment",
            "production",
        ]
        done = run(work, *args)
        assert done.returncode == 0, done.stdout + done.stderr
        playbook = work / "playbooks" / "shop.yaml"
        text = playbook.read_text()
        assert text.splitlines()[0] == MODELINE.format(schema="playbook.schema.json")
        # the three shapes, recognised from the metadata and the series' labels
        book = load_playbook(playbook)
        metrics = {m.metric: m for m in book.gates["guardrails"].metrics}
        assert set(metrics) == {"error_rate", "error_rate_vs_control", "p95_latency_ms"}
        assert metrics["error_rate"].query == 'sum(increase(shop_http_requests_total{code=~"5.."}[$window]))'
        assert metrics["error_rate"].samples == "sum(increase(shop_http_requests_total[$window]))"
        compare = metrics["error_rate_vs_control"]
        assert compare.kind == "compare" and (compare.cohorts.treatment, compare.cohorts.control) == ("new", "old")
        assert 'variant="$cohort"' in compare.query
        assert "histogram_quantile(0.95" in metrics["p95_latency_ms"].query
        assert "shop_request_duration_seconds_bucket" in metrics["p95_latency_ms"].query
        # each query ran once against the real server: values, not errors, in the comments and the output
        ran = [line for line in text.splitlines() if "ran once at init:" in line]
        assert len(ran) == 3 and not any("FAILED" in line or "no data" in line for line in ran), ran
        assert "ms from" in "".join(ran) and "treatment" in "".join(ran)
        latency = metrics["p95_latency_ms"]
        assert 50 <= latency.target <= 500 and latency.alert > latency.target  # set from today's value
        assert "REVIEW" in text and "GET /healthz answered 200 at init" in text
        # what rollout validate says, and what an editor would, with the schema written beside it
        assert run(work, "validate", str(playbook)).returncode == 0
        schema = json.loads((work / "playbooks" / "playbook.schema.json").read_text())
        assert list(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(text))) == []
        env_schema = json.loads((work / "environments" / "environment.schema.json").read_text())
        for env in ("staging", "production"):
            data = yaml.safe_load((work / "environments" / f"{env}.yaml").read_text())
            assert list(jsonschema.Draft7Validator(env_schema).iter_errors(data)) == []
            assert data["service_url"] == service.url
        planned = run(
            work, "plan", "--env", "production", "--playbook", str(playbook), "--json", SHOP_ADMIN_TOKEN=TOKEN
        )
        assert planned.returncode == 0, planned.stderr
        assert [s["kind"] for s in json.loads(planned.stdout)["steps"]] == ["configure", "health", "ramp"]

        # again: nothing is overwritten without --force
        before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
        again = run(work, *args)
        assert again.returncode == 2 and "already exist" in again.stderr and "--force" in again.stderr
        assert again.stderr.count("\n") == 1 and "Traceback" not in again.stderr
        assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before
        forced = run(work, *args, "--force")
        assert forced.returncode == 0, forced.stderr
    finally:
        if prometheus is not None:
            prometheus.close()
        service.close()
        exporter.close()


def family(name: str, kind: str, **labels: list[str]) -> Family:
    return Family(name, kind, "", dict(labels))


def test_an_error_counter_beside_a_request_counter_makes_a_rate_and_a_compare():
    proposals, why = propose(
        [
            family("standin_requests_total", "counter", path=["new", "old"]),
            family("standin_errors_total", "counter", path=["new", "old"]),
            family("process_cpu_seconds_total", "counter"),
        ]
    )
    assert why == ""
    rate, compare = proposals
    assert (rate.query, rate.samples) == (
        "sum(increase(standin_errors_total[$window]))",
        "sum(increase(standin_requests_total[$window]))",
    )
    assert compare.cohorts == ("new", "old") and 'path="$cohort"' in compare.samples


def test_status_labels_in_words_and_classes_and_a_selector():
    [words] = propose([family("jobs_total", "counter", outcome=["ok", "failed", "timeout"])])[0]
    assert '{outcome=~"failed|timeout"}' in words.query
    [classes] = propose([family("http_requests_total", "counter", status=["2xx", "5xx"])], 'job="shop"')[0]
    assert classes.query == 'sum(increase(http_requests_total{job="shop",status=~"5.."}[$window]))'
    assert classes.samples == 'sum(increase(http_requests_total{job="shop"}[$window]))'


def test_a_histogram_in_milliseconds_is_not_scaled_and_cohort_pairs_are_read_either_way_round():
    [latency] = propose([family("api_latency_milliseconds", "histogram", route=["/a"])])[0]
    assert latency.query.startswith("histogram_quantile(0.95") and "api_latency_milliseconds_bucket" in latency.query
    rate, compare = propose([family("req_total", "counter", code=["200", "503"], cohort=["control", "treatment"])])[0]
    assert rate.metric == "error_rate" and compare.cohorts == ("treatment", "control")


def test_prometheus_own_metrics_come_last():
    rate = propose(
        [
            family("prometheus_http_requests_total", "counter", code=["200", "503"], handler=["/api/v1/query"]),
            family("shop_requests_total", "counter", code=["200", "500"]),
            family("prometheus_http_request_duration_seconds", "histogram", handler=["/"]),
        ]
    )[0]
    assert "shop_requests_total" in rate[0].query
    assert "prometheus_http_request_duration_seconds" in rate[-1].query  # the only histogram there is


def test_nothing_recognisable_says_what_was_seen():
    proposals, why = propose([family("shop_queue_depth", "gauge"), family("up", "gauge")])
    assert proposals == [] and "shop_queue_depth (gauge)" in why


def test_without_a_terminal_a_missing_option_is_one_line_and_exit_2(tmp_path):
    done = run(tmp_path, "init", "--flag-backend", "envfile")
    assert done.returncode == 2 and "--service-url is required (no terminal to ask on)" in done.stderr
    done = run(tmp_path, "init", "--service-url", "http://user:pw@shop.example.com")
    assert done.returncode == 2 and "no credentials in a URL" in done.stderr and "pw" not in done.stderr
    assert not (tmp_path / "playbooks").exists()


def test_the_backends_are_read_when_init_asks_for_them_not_when_the_cli_is_imported(tmp_path):
    listed = run(tmp_path, "init", "--help")
    assert listed.returncode == 0 and "--flag-backend [envfile|http|command|postgres|unleash]" in listed.stdout
    bad = run(tmp_path, "init", "--flag-backend", "nope", "--service-url", "http://shop.example.com")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines()[-1] == (
        "Error: Invalid value for '--flag-backend': 'nope' is not one of "
        "'envfile', 'http', 'command', 'postgres', 'unleash'."
    )
    assert not (tmp_path / "playbooks").exists()
    # a command that is not init pays no scan of the installed packages for it at start
    scans = subprocess.run(
        [
            sys.executable,
            "-c",
            "from rollout.playbook import plugins\n"
            "seen = []\n"
            "scan = plugins.Group._entry_points\n"
            "plugins.Group._entry_points = lambda self: seen.append(self.name) or scan(self)\n"
            "import rollout.cli\n"
            "print(seen)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert scans.stdout.strip() == "[]", scans.stdout + scans.stderr


@pytest.mark.slow
def test_without_prometheus_a_placeholder_gate_is_written_and_validates(tmp_path):
    done = run(
        tmp_path, "init", "--service-url", "http://127.0.0.1:9", "--env-file", "/srv/shop/service.env", "--name", "shop"
    )
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "playbooks" / "shop.yaml").read_text()
    assert "REVIEW: a placeholder. no Prometheus was given (--prometheus)" in text
    assert "did not answer at init" in text
    assert load_playbook(tmp_path / "playbooks" / "shop.yaml").flag.backend == "envfile"
    assert 'env_file: "/srv/shop/service.env"' in (tmp_path / "environments" / "production.yaml").read_text()


@pytest.mark.slow
def test_at_a_terminal_it_asks(tmp_path):
    """The questions, answered through a real pseudo-terminal."""
    main, child = pty.openpty()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")}
    proc = subprocess.Popen(
        [ROLLOUT, "init", "--name", "asked"],
        cwd=tmp_path,
        stdin=child,
        stdout=child,
        stderr=child,
        env={**environ, "TERM": "dumb"},
    )
    os.close(child)
    answers = iter(["http://127.0.0.1:9", "command", "deployctl flag {enabled} {percent}", ""])
    seen = b""
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(main, 4096)
        except OSError:
            break
        seen += chunk
        if chunk.rstrip().endswith((b":", b"]:")) and b"?" not in chunk[-3:]:
            os.write(main, (next(answers, "") + "\n").encode())
    proc.wait(30)
    os.close(main)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert b"Your service's base URL" in seen and b"Flag backend" in seen and b"Prometheus' URL" in seen
    book = load_playbook(tmp_path / "playbooks" / "asked.yaml")
    assert book.flag.backend == "command" and book.flag.command == ["deployctl", "flag", "{enabled}", "{percent}"]
