"""Every answer read within a deadline and a size, whoever sends it (:mod:`rollout.util.bounded`):
the shared read itself, the provider client's send, the service's Unleash poll, the target reads
behind ``status`` and the dashboard. Servers that trickle, flood and redirect on the wire
(:mod:`tests.support.hostile`), the real service in its own process where memory is the point."""

from __future__ import annotations

import asyncio
import gzip
import os
import resource
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest

from rollout.booking.flags.unleash import UnleashSource
from rollout.booking.provider.outcome import Kind
from rollout.checks.client import ServiceClient
from rollout.playbook.model import MetricGate
from rollout.providers.alerts import AlertmanagerAlerts
from rollout.providers.prometheus import PrometheusMetrics
from rollout.targets.embedded.client import EmbeddedClient
from rollout.util import bounded
from rollout.util.errors import MeasurementError
from rollout.util.serving import free_port
from tests.booking.provider.test_provider_client import _send
from tests.support.harness import Service, base_env, wait_until
from tests.support.hostile import Answer, Hostile, bomb_answer, gzip_bomb, json_answer, trickled

FEATURES = "GET /api/client/features"


@pytest.fixture
def hostile(hostile_server: Hostile) -> Hostile:
    return hostile_server.reset()


def read(
    hostile: Hostile, path: str, seconds: float = 1.0, max_bytes: int = bounded.MAX_ANSWER_BYTES
) -> httpx.Response:
    with bounded.client(hostile.url) as http:
        return bounded.exchange(http, "GET", path, bounded.Deadline(seconds), max_bytes)


# --- the shared read --------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [False, True], ids=["body", "headers"])
def test_a_trickle_is_cut_at_the_deadline_not_at_a_read_timeout(hostile, headers):
    hostile.on("GET /slow", trickled({"ok": True}, every=0.2, headers=headers))
    started = time.monotonic()
    with pytest.raises(bounded.TooSlow, match="within 1s"):
        read(hostile, "/slow", 1.0)
    assert time.monotonic() - started < 1.0 + 1.0  # each byte came in time; the answer never did


def test_a_gzip_bomb_is_refused_after_the_cap_not_after_two_gib(hostile):
    hostile.on("GET /bomb", bomb_answer(2))
    with pytest.raises(bounded.TooLarge, match="larger than 1 MiB decoded"):
        read(hostile, "/bomb", 5.0)
    plain = Answer(200, b"x" * (bounded.MAX_ANSWER_BYTES + 1))
    hostile.on("GET /big", plain)
    with pytest.raises(bounded.TooLarge, match="on the wire"):
        read(hostile, "/big", 5.0)


def test_encodings_asked_for_are_decoded_and_others_refused(hostile):
    body = b'{"answer": 42}'
    hostile.on("GET /gzip", Answer(200, gzip.compress(body), ("Content-Encoding: gzip",)))
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    hostile.on("GET /raw-deflate", Answer(200, raw.compress(body) + raw.flush(), ("Content-Encoding: deflate",)))
    hostile.on("GET /deflate", Answer(200, zlib.compress(body), ("Content-Encoding: deflate",)))
    hostile.on("GET /br", Answer(200, b"\x0b\x02\x80", ("Content-Encoding: br",)))
    hostile.on("GET /broken", Answer(200, b"\x1f\x8bnot gzip at all", ("Content-Encoding: gzip",)))
    for path in ("/gzip", "/raw-deflate", "/deflate"):
        answer = read(hostile, path)
        assert answer.json() == {"answer": 42} and "content-encoding" not in answer.headers, path
    with pytest.raises(bounded.BadEncoding, match="'br', which was not asked for"):
        read(hostile, "/br")
    with pytest.raises(bounded.BadEncoding, match="compression is broken"):
        read(hostile, "/broken")


def test_a_redirect_is_an_answer_never_followed(hostile):
    hostile.on("GET /moved", Answer(302, b"", ("Location: /elsewhere",)))
    answer = read(hostile, "/moved")
    assert answer.status_code == 302 and hostile.requests() == ["GET /moved"]


def test_a_service_client_read_is_bounded_and_says_why(hostile):
    hostile.on("GET /api/whatsapp/health", trickled({"status": "ok"}, every=0.2))
    hostile.on("GET /api/whatsapp/metrics", bomb_answer(1))
    service = EmbeddedClient(hostile.url, timeout=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(MeasurementError, match="no complete answer to GET /api/whatsapp/health within 1s"):
            service.health()
        assert time.monotonic() - started < 1.0 + 1.0
        with pytest.raises(MeasurementError, match="larger than 1 MiB"):
            service.metrics(60)
    finally:
        service.close()


def test_an_answer_that_is_not_the_json_it_must_be_is_one_line_naming_who_answered(hostile):
    """The one check (:func:`bounded.json_of`) as the service client, Prometheus and Alertmanager use it."""
    page = Answer(200, b"<html>sign in</html>", ("Content-Type: text/html",))
    hostile.on("GET /page", page).on("GET /list", json_answer([1, 2])).on("GET /object", json_answer({"ok": 1}))
    service = ServiceClient(hostile.url, timeout=1.0)
    try:
        assert service.json("GET", "/object") == {"ok": 1}
        with pytest.raises(MeasurementError) as seen:
            service.json("GET", "/page")
        assert str(seen.value) == f"{hostile.url}/page: answer is not JSON (HTTP 200)"
        with pytest.raises(MeasurementError) as seen:
            service.json("GET", "/list")
        assert str(seen.value) == f"{hostile.url}/list: answer is not a JSON object"
    finally:
        service.close()
    hostile.on("GET /api/v1/query", page)
    prom = PrometheusMetrics(hostile.url, None, 1.0, "prom")
    try:
        with pytest.raises(MeasurementError) as seen:
            prom.query("up", 0)
        assert str(seen.value) == "prom: answer is not JSON (HTTP 200)"
        hostile.on("GET /api/v1/query", json_answer(["success"]))
        with pytest.raises(MeasurementError) as seen:
            prom.query("up", 0)
        assert str(seen.value) == "prom: answer is not a JSON object"
    finally:
        prom.close()
    hostile.on("GET /api/v2/alerts", json_answer({"alerts": []}))
    manager = AlertmanagerAlerts(hostile.url, None, 1.0, "am")
    alert = MetricGate(metric="down", provider="am", kind="alert", alertname="ServiceDown")
    try:
        with pytest.raises(MeasurementError) as seen:
            manager.measure(alert, 60, 0, None)
        assert str(seen.value) == "am: /api/v2/alerts: answer is not a list of alerts"
        hostile.on("GET /api/v2/alerts", page)
        with pytest.raises(MeasurementError) as seen:
            manager.measure(alert, 60, 0, None)
        assert str(seen.value) == "am: /api/v2/alerts: answer is not JSON (HTTP 200)"
    finally:
        manager.close()


# --- the provider client: WHATSAPP_TIMEOUT_MS bounds the whole send --------------------------------


def _trickle_answer(body: bytes, every: float):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"HTTP/1.1 200 X\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for i in range(len(body)):
            writer.write(body[i : i + 1])
            await writer.drain()
            await asyncio.sleep(every)

    return handler


def _reply(data: bytes):
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return handler


def test_a_provider_trickling_its_answer_is_cut_at_the_send_timeout():
    body = b'{"status": "success", "message_id": 7, "message_wamid": "wamid.X"}'[:60]
    outcome, seen = _send(_trickle_answer(body, 0.5), timeout=1.0)
    assert len(seen) == 1  # it reached the provider: the answer is what never came
    assert (outcome.kind, outcome.reason) == (Kind.AMBIGUOUS, "timeout")
    assert outcome.latency_ms < 1000 + 1000, outcome.latency_ms  # the timeout, plus a second at most


def test_a_provider_answering_a_gzip_bomb_is_read_no_further_than_the_cap():
    bomb = gzip_bomb(1)
    head = f"HTTP/1.1 200 X\r\nContent-Length: {len(bomb)}\r\nContent-Encoding: gzip\r\n\r\n".encode()
    outcome, _ = _send(_reply(head + bomb), timeout=5.0)
    assert (outcome.kind, outcome.reason, outcome.http_status) == (Kind.AMBIGUOUS, "oversized_response", 200)
    head = b"HTTP/1.1 200 X\r\nContent-Length: 3\r\nContent-Encoding: br\r\n\r\n"
    outcome, _ = _send(_reply(head + b"abc"), timeout=5.0)
    assert (outcome.kind, outcome.reason) == (Kind.AMBIGUOUS, "malformed_response")
    body = gzip.compress(b'{"status": "success", "message_id": 8, "message_wamid": "wamid.Y"}')
    head = f"HTTP/1.1 200 X\r\nContent-Length: {len(body)}\r\nContent-Encoding: gzip\r\n\r\n".encode()
    outcome, _ = _send(_reply(head + body), timeout=5.0)
    assert (outcome.kind, outcome.message_id) == (Kind.SUCCESS, 8)


# --- the service's Unleash poll -------------------------------------------------------------------


def features(rollout: str = "50", enabled: bool = True) -> dict:
    strategy = {"name": "flexibleRollout", "title": "rollout", "parameters": {"rollout": rollout, "groupId": "wa"}}
    return {"version": 2, "features": [{"name": "wa", "enabled": enabled, "strategies": [strategy]}]}


def test_a_bad_percentage_from_unleash_is_blamed_on_unleash_not_on_the_env_file(hostile, tmp_path):
    hostile.on(FEATURES, json_answer(features("150")))
    source = UnleashSource(hostile.url, "*:production.client", "wa", refresh=0.25, lease=5.0)
    svc = Service(tmp_path, base_env("http://127.0.0.1:9"), flag_source=source)
    try:
        health = wait_until(lambda: (h := svc.http.get("/api/whatsapp/health").json())["config_error"] and h, 10)
        assert health["config_error"].startswith(f"Unleash feature wa (over {svc.env_file}): WHATSAPP_ROLLOUT_PERCENT")
        assert health["flag_enabled"] is False  # refused closed
    finally:
        svc.close()
        source.stop()


@pytest.mark.slow
def test_a_trickling_unleash_never_stalls_the_service_poll(hostile, tmp_path):
    hostile.on(FEATURES, json_answer(features()))
    source = UnleashSource(hostile.url, "*:production.client", "wa", refresh=0.25, lease=1.5)
    svc = Service(tmp_path, base_env("http://127.0.0.1:9"), flag_source=source)
    try:
        wait_until(lambda: svc.metrics(1)["rollout_percent"] == 50, 10, "the service to follow Unleash")
        hostile.on(FEATURES, trickled(features(), every=0.5))
        before = len(hostile.requests())
        lease = "flag source (unleash) unreachable past the lease; sends stopped"
        wait_until(lambda: lease in svc.http.get("/api/whatsapp/health").json()["problems"], 10, "the lease to run out")
        # each poll gives up at its deadline (1 s) and the next one goes out: none hangs on the trickle
        wait_until(lambda: len(hostile.requests()) >= before + 3, 6, "three polls of a trickling Unleash")
    finally:
        svc.close()
        source.stop()


@pytest.mark.slow
def test_a_flooding_unleash_keeps_the_service_in_bounded_memory(hostile, tmp_path):
    hostile.on(FEATURES, bomb_answer(2))
    port = free_port()
    env = {**os.environ, **base_env("http://127.0.0.1:9"), "UNLEASH_API_TOKEN": "*:production.client"}

    def cap() -> None:  # a build that reads the answer whole fails with a MemoryError, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    command = [sys.executable, "-m", "rollout", "serve", "--port", str(port), "--db", str(tmp_path / "svc.db")]
    command += ["--unleash-url", hostile.url, "--unleash-feature", "wa", "--flag-refresh", "0.25"]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "serve.log", "wb"),  # noqa: SIM115 - the process holds it
        preexec_fn=cap,
    )
    try:
        wait_until(lambda: hostile.requests().count(FEATURES) >= 3, 30, "three polls of a flooding Unleash")
        peak_kib = next(
            int(line.split()[1])
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
        health = httpx.get(f"http://127.0.0.1:{port}/api/whatsapp/health", timeout=5).json()
    finally:
        proc.terminate()
        proc.wait(20)
    print(f"the service polling a flooding Unleash peaked at {peak_kib // 1024} MiB")
    assert peak_kib < 300 << 10, f"the service peaked at {peak_kib >> 10} MiB"
    assert health["flag_enabled"] is False and health["flag_refreshed_at"] is None
    assert "larger than 8 MiB" in (tmp_path / "serve.log").read_text()
