"""Restarts and crashes never lose a confirmation and never send one twice."""

from __future__ import annotations

import signal
from collections import Counter

import httpx
import pytest

from rollout.util.envfile import write_env_file
from rollout.util.serving import free_port
from tests.support.harness import ADMIN_TOKEN, base_env, booking_body, serve_process, wait_until

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_graceful_restart_resumes_scheduled_retries(make_service, sandbox, tmp_path):
    first = make_service(folder=tmp_path / "svc", WHATSAPP_RETRY_BASE_MS=20_000)
    sandbox.faults(http_5xx_rate=1.0)
    ids = [first.book(n)["id"] for n in range(1, 4)]
    for booking_id in ids:
        wait_until(
            lambda b=booking_id: first.notification(b)["attempts"] == 1 and first.notification(b)["status"] == "pending"
        )
    clock = first.clock
    first.close()
    sandbox.faults(http_5xx_rate=0.0)
    clock.advance(60)
    second = make_service(folder=tmp_path / "svc", clock=clock)
    for booking_id in ids:
        assert second.wait_status(booking_id, "sent")["attempts"] == 2
    assert sorted(m["parameters"][5] for m in sandbox.messages()) == ["NB-000001", "NB-000002", "NB-000003"]


def test_graceful_stop_with_a_backlog_loses_nothing_and_sends_nothing_twice(make_service, sandbox, tmp_path):
    first = make_service(folder=tmp_path / "svc", WHATSAPP_MAX_CONCURRENCY=2)
    sandbox.faults(latency_ms=150)
    for n in range(1, 21):
        first.book(n)
    wait_until(lambda: len(sandbox.messages()) >= 2)
    clock = first.clock
    first.close()  # in-flight sends finish; the rest stay pending
    sandbox.faults(latency_ms=0)
    second = make_service(folder=tmp_path / "svc", clock=clock)
    for n in range(1, 21):
        note = second.wait_status(n, "sent", "failed")
        assert note["status"] == "sent" or note["fallback"] is not None
    per_booking = Counter(m["parameters"][5] for m in sandbox.messages())
    assert max(per_booking.values()) == 1 and len(per_booking) == 20


def _wait_up(url: str) -> None:
    def up() -> bool:
        try:
            return httpx.get(f"{url}/api/whatsapp/metrics?window=60", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, timeout=20, what="service up")


@pytest.mark.slow
def test_kill_9_during_a_send_never_resends_and_falls_back(sandbox, tmp_path):
    write_env_file(tmp_path / "service.env", base_env(sandbox.api_url, WHATSAPP_TIMEOUT_MS=5000))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    sandbox.faults(latency_ms=1500)
    proc = serve_process(port, tmp_path)
    try:
        _wait_up(url)
        booking_id = httpx.post(f"{url}/api/bookings", json=booking_body(1)).json()["id"]
        wait_until(lambda: sandbox.stats()["requests"] >= 1, what="send in flight")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: len(sandbox.messages()) == 1, what="the provider to finish the in-flight send")
        sandbox.faults(latency_ms=0)
        proc = serve_process(port, tmp_path)
        _wait_up(url)
        note = httpx.get(f"{url}/api/bookings/{booking_id}", headers=ADMIN).json()["notification"]
        assert note["status"] == "failed" and note["reason"] == "unconfirmed"
        assert note["fallback"]["reason"] == "unconfirmed"
        second = httpx.post(f"{url}/api/bookings", json=booking_body(2)).json()["id"]
        wait_until(
            lambda: httpx.get(f"{url}/api/bookings/{second}", headers=ADMIN).json()["notification"]["status"] == "sent"
        )
        assert [m["parameters"][5] for m in sandbox.messages()] == ["NB-000001", "NB-000002"]
    finally:
        proc.kill()
        proc.wait(10)


def test_bad_configuration_stops_start_up_with_one_line_naming_the_variable(tmp_path):
    write_env_file(tmp_path / "service.env", {"WHATSAPP_RETRY_ATTEMPTS": "three"})
    proc = serve_process(free_port(), tmp_path)
    _, err = proc.communicate(timeout=30)
    text = err.decode()
    assert proc.returncode == 2
    assert "WHATSAPP_RETRY_ATTEMPTS" in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1


def test_taken_port_is_a_clear_error(tmp_path):
    write_env_file(tmp_path / "service.env", {"WHATSAPP_NOTIFICATIONS_ENABLED": "false"})
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        proc = serve_process(taken.getsockname()[1], tmp_path)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "cannot listen on" in err.decode() and "Traceback" not in err.decode()
