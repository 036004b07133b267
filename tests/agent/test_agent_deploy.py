"""Deploying the agent: the systemd unit (``systemd-analyze verify`` where it exists), the container
image's Dockerfile (parsed: no Docker engine here), the Kubernetes manifests (validated offline
against the Kubernetes JSON schemas that kubernetes-validate bundles), and a real ``rollout agent``
process configured the way those examples configure it: the settings file, environment variables,
secrets by reference, JSON log lines, SIGTERM."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rollout.agent.config import AgentConfig, load_config
from rollout.util.serving import free_port
from tests.support.requirements_servers import systemd_analyze_binary, unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "rollout-agent.service"
#: the seconds a SIGTERM gives evaluations under way, as the examples configure it
STOP_GRACE = load_config(DEPLOY / "agent.yaml", None, {}).stop_grace


def unit_sections(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values]}} (a key may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None and "=" in line, line
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_systemd_unit_runs_the_agent_with_json_logs_and_stops_it_within_grace():
    unit = unit_sections(UNIT.read_text())
    service = unit["Service"]
    argv = shlex.split(service["ExecStart"][0])
    assert Path(argv[0]).is_absolute() and Path(argv[0]).name == "rollout" and argv[1] == "agent"
    assert argv[argv.index("--config") + 1] == "/etc/rollout/agent.yaml" and "--log-format" in argv
    assert argv[argv.index("--log-format") + 1] == "json"
    assert service["KillSignal"] == ["SIGTERM"] and float(service["TimeoutStopSec"][0]) > STOP_GRACE
    assert service["Restart"] == ["on-failure"] and service["User"] != ["root"]
    # secrets by reference: the values live in an environment file of their own, not in the unit
    assert service["EnvironmentFile"] == ["/etc/rollout/agent.env"]
    assert not any("TOKEN" in e or "postgresql" in e for e in service.get("Environment", []))
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "network-online.target" in unit["Unit"]["After"][0]


def test_systemd_analyze_verifies_the_unit(tmp_path):
    analyze = systemd_analyze_binary()
    if analyze is None:
        unavailable("systemd", "this machine: the unit was only parsed")
    # the unit as installed, its ExecStart pointing at this machine's rollout (verify checks it exists)
    rollout = Path(sys.executable).parent / "rollout"
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/rollout/venv/bin/rollout", str(rollout)))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    said = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    assert done.returncode == 0 and said == [], done.stdout + done.stderr
    # a unit it would refuse is refused: the check can fail
    copy.write_text(copy.read_text().replace("KillSignal=SIGTERM", "KillSignal=SIGTERM\nRestartSecs=2"))
    done = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'RestartSecs'" in done.stderr


def dockerfile(text: str) -> list[tuple[str, str]]:
    """The Dockerfile's instructions, continuation lines joined: [(INSTRUCTION, arguments)]."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def test_the_dockerfile_builds_the_wheel_installs_it_and_runs_rollout_agent():
    steps = dockerfile((DEPLOY / "Dockerfile").read_text())
    stages = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    assert len(stages) == 2 and steps[0][1].endswith(" AS build")
    build, final = steps[: stages[1]], steps[stages[1] :]
    # the build stage makes the wheel from the repository's own files
    for word, args in build:
        if word == "COPY":
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), source
    assert ("RUN", "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .") in build
    # the image installs that wheel, not the source tree, and runs the agent as a user
    assert ("COPY", "--from=build /wheels /wheels") in final
    assert any(w == "RUN" and "pip install" in a and "/wheels/*.whl" in a for w, a in final)
    assert not any(w == "COPY" and a.split()[0] == "rollout" for w, a in final)
    user = next(a for w, a in final if w == "USER")
    assert user not in ("root", "0")
    entry = json.loads(next(a for w, a in final if w == "ENTRYPOINT"))
    cmd = json.loads(next(a for w, a in final if w == "CMD"))
    assert entry == ["rollout", "agent"] and cmd == ["--config", "/etc/rollout/agent.yaml", "--log-format", "json"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["rollout"] == "rollout.cli:main"  # what the wheel puts on PATH as `rollout`
    env = next(a for w, a in final if w == "ENV")
    assert "ROLLOUT_AGENT_LISTEN=0.0.0.0:8710" in env and ("EXPOSE", "8710") in final
    assert ("STOPSIGNAL", "SIGTERM") in final
    assert ("COPY", "deploy/agent.yaml /etc/rollout/agent.yaml") in final


def manifests() -> dict[str, dict[str, Any]]:
    """Every resource of deploy/kubernetes, by kind."""
    found = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[doc["kind"]] = doc
    return found


def test_the_kubernetes_manifests_validate_against_the_kubernetes_schemas_offline():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    from kubernetes_validate.utils import ValidationError, all_versions, latest_version

    resources = manifests()
    assert set(resources) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    # the oldest and the newest Kubernetes the bundled schemas know, strict: no unknown field
    for version in (all_versions()[0], latest_version()):
        for resource in resources.values():
            kubernetes_validate.validate(resource, version, strict=True)
    # the validator does refuse a broken manifest
    broken = json.loads(json.dumps(resources["Deployment"]))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, latest_version(), strict=True)
    broken = json.loads(json.dumps(resources["Deployment"]))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def test_the_deployment_runs_two_agents_probed_on_healthz_with_secrets_by_reference():
    resources = manifests()
    deployment, service, config = resources["Deployment"], resources["Service"], resources["ConfigMap"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert resources["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    # the agent stops within the kubelet's grace: SIGTERM first, SIGKILL only after stop_grace and more
    agent_yaml = yaml.safe_load(config["data"]["agent.yaml"])
    assert pod["terminationGracePeriodSeconds"] > AgentConfig.model_validate(agent_yaml).stop_grace
    # configuration: the file from the ConfigMap (the same settings as deploy/agent.yaml), the rest by environment
    assert agent_yaml == yaml.safe_load((DEPLOY / "agent.yaml").read_text())
    assert container["args"] == ["--config", "/etc/rollout/agent.yaml", "--log-format", "json"]
    env = {e["name"]: e for e in container["env"]}
    assert env["ROLLOUT_AGENT_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    host, port = env["ROLLOUT_AGENT_LISTEN"]["value"].rsplit(":", 1)
    for secret in ("ROLLOUT_STATE", "ROLLOUT_AGENT_TOKEN"):
        assert "value" not in env[secret] and env[secret]["valueFrom"]["secretKeyRef"]["name"] == "rollout-agent"
    assert container["envFrom"] == [{"secretRef": {"name": "rollout-project-secrets"}}]
    # liveness and readiness on /healthz, on the port the agent listens on, which the Service targets
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(port)} and host == "0.0.0.0"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    # mounted where deploy/agent.yaml's relative paths point (WORKDIR /srv/rollout)
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/etc/rollout"] == "config" and mounts["/srv/rollout/.rollout"] == "work"
    assert {"/srv/rollout/project/playbooks", "/srv/rollout/project/environments"} <= set(mounts)
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


# --- a real agent, configured as the examples configure it -------------------------------------------

AGENT_TOKEN = "deploy-agent-token-6b2e91f0"
ADMIN_TOKEN = "service-admin-token-41c7"


def project_as_deployed(folder: Path) -> None:
    """The shipped project where deploy/agent.yaml expects it (project/playbooks, project/environments)."""
    shutil.copytree(ROOT / "playbooks", folder / "project" / "playbooks")
    shutil.copytree(ROOT / "environments", folder / "project" / "environments")


def agent_process(folder: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rollout", "agent", "--config", str(DEPLOY / "agent.yaml"), "--log-format", "json"],
        cwd=folder,
        env={k: v for k, v in os.environ.items() if not k.startswith("ROLLOUT_")} | env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_an_agent_configured_by_file_and_environment_serves_logs_json_and_stops_on_sigterm(tmp_path):
    project_as_deployed(tmp_path)
    port, nobody = free_port(), free_port()
    proc = agent_process(
        tmp_path,
        ROLLOUT_AGENT_NAME="agent-a",
        ROLLOUT_STATE=str(tmp_path / "state.db"),
        ROLLOUT_AGENT_LISTEN=f"127.0.0.1:{port}",
        ROLLOUT_AGENT_TOKEN=AGENT_TOKEN,
        # the environment's own secrets, by reference (environments/production.yaml names them)
        ZAPTRA_API_TOKEN="zaptra-token-5d0c",
        ROLLOUT_ADMIN_TOKEN=ADMIN_TOKEN,
        ROLLOUT_PRODUCTION_URL=f"http://127.0.0.1:{nobody}",  # no service there: the gate holds
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the agent never answered /healthz"
            time.sleep(0.1)
        answer = httpx.get(
            f"{url}/v1/verdict/whatsapp-booking-confirmations/production/seed",
            headers={"Authorization": f"Bearer {AGENT_TOKEN}"},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["verdict"] == "hold", answer.text
        # measured now over the gate's 5-minute window, through the environment's service URL: nobody answers
        assert f"127.0.0.1:{nobody}/api/whatsapp/metrics?window=300: ConnectError" in answer.json()["summary"]
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=STOP_GRACE + 15)
        stopped_in = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert stopped_in < STOP_GRACE
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    assert {line["agent"] for line in lines} == {"agent-a"}
    events = [line["event"] for line in lines]
    assert events[0] == "started" and "listening" in events and events[-1] == "stopped"
    served = next(line for line in lines if line["event"] == "verdict_served")
    assert (served["environment"], served["gate"], served["verdict"]) == ("production", "seed", "hold")
    assert ADMIN_TOKEN not in err and AGENT_TOKEN not in err and ADMIN_TOKEN not in answer.text


@pytest.mark.slow
def test_an_agent_listening_off_loopback_without_a_token_refuses_to_start_and_registers_nothing(tmp_path):
    project_as_deployed(tmp_path)
    proc = agent_process(
        tmp_path,
        ROLLOUT_STATE=str(tmp_path / "state.db"),
        ROLLOUT_AGENT_LISTEN=f"0.0.0.0:{free_port()}",
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [
        "rollout: rollout agent: listening on 0.0.0.0 (not loopback) needs a token for the verdict API: "
        "set ROLLOUT_AGENT_TOKEN (at least 16 characters)"
    ]
    assert not (tmp_path / "state.db").exists()  # refused before it registered anywhere
