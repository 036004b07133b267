"""The booking intake under load: a bounded queue answered 503 with Retry-After, and the sender held
to its busy pace while bookings flood in (it catches up after, nothing lost, nothing sent twice)."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.support.harness import booking_body, wait_until


def _half_sent_booking(url: str) -> tuple[socket.socket, bytes]:
    """A booking request whose body is not all there yet: it is in progress until the rest comes."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(booking_body(900)).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /api/bookings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:10]
    )
    return sock, body[10:]


def test_past_the_intake_queue_a_booking_gets_503_with_retry_after_and_is_not_taken(make_service):
    service = make_service(WHATSAPP_INTAKE_QUEUE=1)
    held, rest = _half_sent_booking(service.url)
    try:
        wait_until(
            lambda: service.http.post("/api/bookings", json=booking_body(1)).status_code == 503,
            what="the queue full",
        )
        refused = service.http.post("/api/bookings", json=booking_body(2))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "overloaded"
        held.sendall(rest)
        answer = held.recv(65536).decode()
        assert answer.startswith("HTTP/1.1 201"), answer
    finally:
        held.close()
    # the refused ones were not taken: the same references book fine now, and only now
    assert service.book(1)["id"] and service.book(2)["id"]
    assert service.metrics(60)["cohorts"]["treatment"]["booking_requests"] == 3


@pytest.mark.slow
def test_a_flood_holds_the_sender_to_its_busy_pace_and_it_catches_up_after(make_service, sandbox):
    # busy from the first booking (more than 0.5 a second on the manual clock, which stands still)
    service = make_service(WHATSAPP_BUSY_BOOKINGS_PER_S=0.5, WHATSAPP_SENDS_PER_S_WHEN_BUSY=10)
    ids = [service.book(n)["id"] for n in range(1, 31)]
    time.sleep(0.3)  # several turns of the outbox's loop (every 50 ms): none may send, no pace has accrued
    assert sandbox.messages() == [] and all(service.notification(i)["status"] == "pending" for i in ids)
    service.clock.advance(0.2)  # the busy pace accrues 2 sends (at most a burst of 1 per turn)
    wait_until(lambda: len(sandbox.messages()) >= 1, what="the busy pace's sends")
    time.sleep(0.3)
    assert 1 <= len(sandbox.messages()) <= 2  # held: the intake comes first
    service.clock.advance(1.0)  # the flood is over (no booking in the last second): the rest drain at once
    for booking_id in ids:
        service.wait_status(booking_id, "sent")
    refs = [m["parameters"][5] for m in sandbox.messages()]
    assert len(refs) == 30 and len(set(refs)) == 30
