"""The flag, the rollout percentage and opt-out decide who gets WhatsApp; they are read live."""

from __future__ import annotations

from rollout.booking.cohort import bucket
from tests.support.harness import wait_until


def test_flag_off_skips_and_logs_disabled(make_service, sandbox):
    service = make_service(WHATSAPP_NOTIFICATIONS_ENABLED=False)
    note = service.wait_status(service.book(1)["id"], "skipped")
    assert note["reason"] == "flag_off" and note["fallback"] is None
    assert sandbox.stats()["requests"] == 0
    assert any(e["event"] == "disabled" and e["booking_id"] == 1 for e in service.log_events())
    assert service.metrics()["skipped_by_reason"]["flag_off"] == 1


def test_flag_written_to_the_env_file_takes_effect_without_restart(service, sandbox):
    service.wait_status(service.book(1)["id"], "sent")
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=False)
    # the settings re-check the file every 20 ms; within a second every send must see it
    wait_until(lambda: service.http.get("/api/whatsapp/health").json()["flag_enabled"] is False, timeout=1.0)
    assert service.wait_status(service.book(2)["id"], "skipped")["reason"] == "flag_off"
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True)
    wait_until(lambda: service.http.get("/api/whatsapp/health").json()["flag_enabled"] is True, timeout=1.0)
    assert service.wait_status(service.book(3)["id"], "sent")
    assert len(sandbox.messages()) == 2


def _book_at_100_per_s(service, n: int, customer: str) -> int:
    """Book on the manual clock at 100 a second: bookings piled on a clock that stands still would
    be a flood (over WHATSAPP_BUSY_BOOKINGS_PER_S), and a flood holds the sender to its busy pace."""
    service.clock.advance(0.01)
    return service.book(n, customer=customer)["id"]


def test_rollout_percentage_selects_exactly_the_unleash_cohort(make_service, sandbox):
    service = make_service(WHATSAPP_ROLLOUT_PERCENT=30)
    customers = [f"customer-{i}" for i in range(60)]
    ids = {c: _book_at_100_per_s(service, i, c) for i, c in enumerate(customers, start=1)}
    expected_in = {c for c in customers if bucket("whatsapp_notifications", c) <= 30}
    assert 5 < len(expected_in) < 35
    for customer, booking_id in ids.items():
        note = service.wait_status(booking_id, "sent", "skipped")
        assert (note["status"] == "sent") == (customer in expected_in), customer
        if note["status"] == "skipped":
            assert note["reason"] == "not_in_cohort"
    assert service.metrics()["skipped_by_reason"]["not_in_cohort"] == 60 - len(expected_in)


def test_ramping_up_keeps_everyone_already_in(make_service, sandbox):
    service = make_service(WHATSAPP_ROLLOUT_PERCENT=10)
    customers = [f"c{i}" for i in range(40)]
    first = {
        c: service.wait_status(_book_at_100_per_s(service, i, c), "sent", "skipped")["status"]
        for i, c in enumerate(customers)
    }
    service.set_env(WHATSAPP_ROLLOUT_PERCENT=50)
    wait_until(lambda: service.http.get("/api/whatsapp/health").json()["rollout_percent"] == 50, timeout=1.0)
    second = {
        c: service.wait_status(_book_at_100_per_s(service, 100 + i, c), "sent", "skipped")["status"]
        for i, c in enumerate(customers)
    }
    assert {c for c, s in first.items() if s == "sent"} <= {c for c, s in second.items() if s == "sent"}


def test_opted_out_customer_is_never_messaged(service, sandbox):
    response = service.http.put("/api/customer/cust-9/preferences", json={"whatsapp_opt_out": True})
    assert response.status_code == 200 and response.json()["whatsapp_opt_out"] is True
    assert service.http.get("/api/customer/cust-9/preferences").json()["whatsapp_opt_out"] is True
    note = service.wait_status(service.book(9)["id"], "skipped")
    assert note["reason"] == "opted_out"
    assert sandbox.stats()["requests"] == 0
    service.http.put("/api/customer/cust-9/preferences", json={"whatsapp_opt_out": False})
    assert service.wait_status(service.book(10, customer="cust-9")["id"], "sent")


def test_bad_env_change_fails_closed_and_health_says_why(service, sandbox):
    service.env_file.write_text(service.env_file.read_text() + "WHATSAPP_ROLLOUT_PERCENT=half\n")
    health = wait_until(
        lambda: (h := service.http.get("/api/whatsapp/health").json())["config_error"] and h, timeout=1.0
    )
    assert health["flag_enabled"] is False and health["status"] == "degraded"
    assert "WHATSAPP_ROLLOUT_PERCENT" in health["config_error"]
    assert service.wait_status(service.book(1)["id"], "skipped")["reason"] == "flag_off"


def test_flag_off_after_a_failed_attempt_still_falls_back(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_BASE_MS=10_000)
    sandbox.faults(http_5xx_rate=1.0)
    booking = service.book(1)["id"]
    wait_until(
        lambda: (
            (n := service.notification(booking))["attempts"] == 1 and n["status"] == "pending" and n["next_attempt_at"]
        ),
        what="a failed first attempt",
    )
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=False)
    service.clock.advance(60)
    note = service.wait_status(booking, "skipped")
    assert note["reason"] == "flag_off" and note["fallback"] is not None  # tried once, never confirmed
    assert service.wait_status(service.book(2)["id"], "skipped")["fallback"] is None  # never tried: no fallback


def test_a_booking_made_while_whatsapp_is_off_never_gets_one_later(make_service, sandbox):
    """The production phase's "works normally with WhatsApp disabled": the moment the booking is
    made decides; turning the flag on afterwards sends nothing for it."""
    service = make_service(WHATSAPP_NOTIFICATIONS_ENABLED=False)
    made = service.book(1)
    assert made["notification"] == {"status": "skipped", "reason": "flag_off"}
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True)
    later = service.book(2)["id"]
    service.wait_status(later, "sent")
    assert service.notification(made["id"])["status"] == "skipped"
    assert [m["parameters"][5] for m in sandbox.messages()] == [service.booking(later)["booking_ref"]]


def test_a_share_raised_after_a_booking_does_not_add_it(make_service, sandbox):
    # one send slot, held 1.5 s by a customer inside the share: the others wait, pending, while the share moves
    service = make_service(WHATSAPP_ROLLOUT_PERCENT=50, WHATSAPP_MAX_CONCURRENCY=1)
    sandbox.faults(latency_ms=1500)
    customers = [f"customer-{i}" for i in range(40)]
    inside = [c for c in customers if bucket("whatsapp_notifications", c) <= 50]
    outside = [c for c in customers if bucket("whatsapp_notifications", c) > 50]
    first = service.book(1, customer=inside[0])["id"]
    wait_until(lambda: service.notification(first)["status"] == "sending", what="the slot taken")
    out_ids = [service.book(10 + i, customer=c)["id"] for i, c in enumerate(outside[:5])]
    in_id = service.book(30, customer=inside[1])["id"]
    assert all(service.notification(i)["status"] == "pending" for i in [*out_ids, in_id])
    service.set_env(WHATSAPP_ROLLOUT_PERCENT=100)
    for booking_id in out_ids:  # outside when booked: raising the share does not add them
        assert service.wait_status(booking_id, "skipped")["reason"] == "not_in_cohort"
    assert service.wait_status(in_id, "sent")
    assert service.wait_status(first, "sent")
