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

import pytest

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


def _example(language: str) -> str:
    """The first ```LANGUAGE block of docs/plugins.md."""
    found = re.search(rf"```{language}\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(), re.S)
    assert found, language
    return found.group(1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package, built and installed into a folder: what PYTHONPATH gets."""
    source = tmp_path_factory.mktemp("rollout-jsonflag")
    (source / "pyproject.toml").write_text(_example("toml"))
    (source / "rollout_jsonflag.py").write_text(_example("python"))
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    done = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (target / "rollout_jsonflag.py").exists()
    return target


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
