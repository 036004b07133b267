"""A flag backend from a separate package: the example of docs/plugins.md, built from that page into a
package with its own pyproject.toml, installed with pip into a folder of its own (``--target`` and
``PYTHONPATH``: no venv to make, and rollout finds it only through its ``rollout.flags`` entry point),
then the real CLI in subprocesses on a playbook that names it: validate, advance (a ramp), rollback, a
typo in the plugin's own key, and the schema. The service is real too: a loopback HTTP server that
re-reads the JSON flag file on every request and reports what it applied."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml

from rollout.playbook.load import load_playbook
from rollout.util.errors import PlaybookError
from tests.flags.test_backend_trust import PLAYBOOK

ROOT = Path(__file__).resolve().parents[2]

#: the flag's own keys in tests/flags/test_backend_trust.py's playbook (an http target, an http stats provider, a
#: configure and a ramp 10 -> 25 -> 50); the service reports what it applied at /flag (``flag.read``)
FLAG = """\
  {path_key}: {flags}/{{env}}.json
  read: {{url: /flag, enabled: enabled, percent: percent}}"""


def _playbook(flags: Path, path_key: str = "path") -> str:
    return PLAYBOOK.format(backend="jsonfile", flag=FLAG.format(path_key=path_key, flags=flags), notify="")


def _example(language: str, which: int = 0) -> str:
    """The ``which``-th ```LANGUAGE block of docs/plugins.md (0: the flag backend's; 1: the judge's)."""
    found = re.findall(rf"```{language}\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S)
    assert len(found) > which, language
    return found[which]


def _install(tmp_path_factory: pytest.TempPathFactory, module: str, which: int) -> Path:
    """The page's example package ``which``, built and installed into a folder: what PYTHONPATH gets."""
    source = tmp_path_factory.mktemp(module)
    (source / "pyproject.toml").write_text(_example("toml", which))
    (source / f"{module}.py").write_text(_example("python", which))
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    done = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (target / f"{module}.py").exists()
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The flag backend's example package, installed into a folder."""
    return _install(tmp_path_factory, "rollout_jsonflag", 0)


class _Service(BaseHTTPRequestHandler):
    """Applies the flag in its JSON file (re-read on every request), as a service would."""

    flag_file: Path

    def do_GET(self) -> None:
        if self.path == "/flag":
            try:
                data = json.loads(self.flag_file.read_text())
            except FileNotFoundError:
                data = {"enabled": False, "percent": 0}
            body = {"enabled": data["enabled"], "percent": data["percent"]}
        elif self.path.startswith("/stats"):
            body = {"rate": 0.0, "n": 100}
        else:
            body = {"status": "ok"}
        raw = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def service(tmp_path):
    flags = tmp_path / "flags"
    flags.mkdir()
    handler = type("Service", (_Service,), {"flag_file": flags / "production.json"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", flags
    server.shutdown()
    server.server_close()
    thread.join(5)


def _argv(folder: Path, *args: str) -> list[str]:
    state = ["--environments", str(folder / "environments"), "--state", str(folder / "state" / "state.db")]
    return [sys.executable, "-m", "rollout", *args, *(state if args[0] in ("advance", "rollback") else [])]


def _start(installed: Path, folder: Path, *args: str) -> subprocess.Popen[str]:
    """``rollout ARGS`` in ``folder``, the plugin package found on PYTHONPATH (rollout from this checkout)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    return subprocess.Popen(
        _argv(folder, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=folder,
        stdin=subprocess.DEVNULL,
    )


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _rollout(installed: Path, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _finish(_start(installed, folder, *args))


@pytest.mark.slow
def test_a_flag_backend_from_an_installed_package_validates_ramps_and_rolls_back(installed, service, tmp_path):
    url, flags = service
    (tmp_path / "environments").mkdir()
    (tmp_path / "environments" / "production.yaml").write_text(f"name: production\nservice_url: {url}\n")
    book, typo_book = tmp_path / "plugged.yaml", tmp_path / "typo.yaml"
    book.write_text(_playbook(flags))
    typo_book.write_text(_playbook(flags, "pathh"))
    flag_file = flags / "production.json"
    # the three that write nothing run side by side
    checking = [
        _start(installed, tmp_path, "validate", str(book)),
        _start(installed, tmp_path, "validate", str(typo_book)),
        _start(installed, tmp_path, "schema", "playbook"),
    ]
    checked, typo, schema_run = (_finish(proc) for proc in checking)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not flag_file.exists()  # validate writes nothing

    done = _rollout(installed, tmp_path, "advance", "--env", "production", "--playbook", str(book), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    assert json.loads(flag_file.read_text()) == {"enabled": True, "percent": 50}

    off = _rollout(
        installed, tmp_path, "rollback", "--env", "production", "--playbook", str(book), "--reason", "test", "--json"
    )
    assert off.returncode == 0, off.stdout + off.stderr
    assert json.loads(flag_file.read_text())["enabled"] is False

    # a typo in the plugin's own key: its file and line, no traceback
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert f"{typo_book.name}:10: flag.pathh: unknown key" in typo.stderr
    assert f"{typo_book.name}:6: flag.path: required" in typo.stderr
    assert "Traceback" not in typo.stderr

    schema = json.loads(schema_run.stdout)
    model = schema["$defs"]["JsonFileFlag"]
    assert "path" in model["properties"] and model["properties"]["backend"]["const"] == "jsonfile"
    assert {"$ref": "#/$defs/JsonFileFlag"} in schema["properties"]["flag"]["oneOf"]


def test_an_unknown_backend_names_the_known_ones(tmp_path):
    book = tmp_path / "p.yaml"
    book.write_text(_playbook(tmp_path).replace("backend: jsonfile", "backend: jsonfil"))
    with pytest.raises(PlaybookError) as refused:
        load_playbook(book)
    assert "p.yaml:6: flag: unknown backend 'jsonfil'; expected one of 'envfile', 'http', 'command'" in str(
        refused.value
    )


JUDGED = """\
version: 1
name: judged
target:
  kind: http
  health: {url: /healthz, expect: {status: 200}}
flag: {variable: FEATURE_ON, percent_variable: FEATURE_SHARE}
providers:
  prom: {kind: prometheus, url: "http://127.0.0.1:9"}
gates:
  g:
    window: 1m
    min_samples: 10
    metrics:
      - {metric: checkout_errors, provider: prom, kind: compare, judge: ratio, RATIO,
         target: 0, alert: 0.01, query: 'sum(rate(errors{variant="$cohort"}[5m]))',
         samples: 'sum(rate(requests{variant="$cohort"}[5m]))'}
phases:
  - name: production
    environment: production
    steps:
      - {kind: configure, set: {FEATURE_ON: "true"}}
      - {kind: ramp, percentages: [10], gate: g, hold: 1m}
"""

#: judges two readings with the playbook's gate set, in a process that finds the judge on PYTHONPATH
JUDGE_TWO_READINGS = """\
import json, sys
from rollout.gates import judge_readings
from rollout.gates.results import Reading
from rollout.playbook.load import load_playbook
from rollout.stats import Cohort

gates = load_playbook(sys.argv[1]).gates["g"]
for treatment, control in ((0.020, 0.010), (0.012, 0.010)):
    cohorts = (Cohort(treatment, 100), Cohort(control, 100))
    [result] = judge_readings(gates, [Reading(treatment - control, 200, 60.0, cohorts=cohorts, percent=10)]).metrics
    print(json.dumps({"verdict": result.verdict, "reason": result.reason}))
"""


@pytest.mark.slow
def test_a_judge_from_an_installed_package_validates_its_own_key_and_judges_with_it(tmp_path_factory, tmp_path):
    site = _install(tmp_path_factory, "rollout_ratiojudge", 1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    books = {}
    written = {"book": "max_ratio: 1.5", "low": "max_ratio: 1", "typo": "max_ratioo: 2", "null": "judge_config: null"}
    for name, ratio in written.items():
        books[name] = tmp_path / f"{name}.yaml"
        books[name].write_text(JUDGED.replace("RATIO", ratio))
    script = tmp_path / "judge.py"
    script.write_text(JUDGE_TWO_READINGS)

    def run(*argv: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=120)

    checked = run(sys.executable, "-m", "rollout", "validate", str(books["book"]))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "gate g: checkout_errors (guardrail, ratio judge max_ratio 1.5)" in checked.stdout
    # the key is the judge's: validated by its model, at the metric's line
    low = run(sys.executable, "-m", "rollout", "validate", str(books["low"]))
    assert low.returncode == 2 and "low.yaml:14: gates.g.metrics.0.max_ratio: Input should be greater than 1" in (
        low.stderr
    ), low.stderr
    typo = run(sys.executable, "-m", "rollout", "validate", str(books["typo"]))
    assert typo.returncode == 2 and "typo.yaml:14: gates.g.metrics.0.max_ratioo: unknown key" in typo.stderr
    assert "typo.yaml:14: gates.g.metrics.0.max_ratio: required" in typo.stderr and "Traceback" not in typo.stderr
    # judge_config is where the model keeps the keys: written as such, it still holds the judge's
    nothing = run(sys.executable, "-m", "rollout", "validate", str(books["null"]))
    said = "null.yaml:14: gates.g.metrics.0: judge_config holds no keys; judge ratio takes max_ratio beside judge:"
    assert nothing.returncode == 2 and said in nothing.stderr, nothing.stderr
    # without the package, neither the judge nor its key is known
    bare = run(
        sys.executable, "-m", "rollout", "validate", str(books["book"]), environ={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert bare.returncode == 2 and "unknown judge 'ratio' (known: mean, rank)" in bare.stderr
    assert "max_ratio: unknown key" in bare.stderr

    judged = run(sys.executable, str(script), str(books["book"]))
    assert judged.returncode == 0, judged.stderr
    twice, slightly = (json.loads(line) for line in judged.stdout.splitlines())
    assert twice == {"verdict": "fail", "reason": "checkout_errors: treatment is 2.00x control (max_ratio 1.5)"}
    assert slightly == {"verdict": "pass", "reason": "checkout_errors: treatment is 1.20x control (max_ratio 1.5)"}

    schema = json.loads(run(sys.executable, "-m", "rollout", "schema", "playbook").stdout)
    metric = schema["$defs"]["MetricGate"]
    assert "judge_config" not in metric["properties"]  # what the model keeps apart is written in the metric
    assert metric["properties"]["max_ratio"]["anyOf"][0]["exclusiveMinimum"] == 1
    assert "ratio" in metric["properties"]["judge"]["anyOf"][0]["enum"]
    # an editor refuses what validate refuses: the judge's required key missing, or its key beside another judge
    editor = jsonschema.Draft7Validator(schema)
    assert not list(editor.iter_errors(yaml.safe_load(books["book"].read_text())))
    for refused in ("judge: ratio, RATIO", "judge: mean, max_ratio: 2", "max_ratio: 2"):
        book = yaml.safe_load(JUDGED.replace("judge: ratio, RATIO", refused.replace("RATIO", "window: 1m")))
        assert list(editor.iter_errors(book)), refused
