"""End to end: the real service sends through the real sandbox on 127.0.0.1."""

from __future__ import annotations

from tests.support.harness import PHONE, SANDBOX_TOKEN, wait_until


def test_booking_is_confirmed_once_with_the_template_and_its_8_parameters(service, sandbox):
    created = service.book(1)
    assert created["notification"]["status"] == "pending"
    note = service.wait_status(created["id"], "sent")
    assert note["attempts"] == 1 and note["wamid"].startswith("wamid.") and note["fallback"] is None
    [message] = sandbox.messages()
    assert message["phone"] == "919876543210"  # one consistent form: country code + digits
    assert (message["template_name"], message["language"]) == ("booking_confirmation", "en_US")
    assert message["parameters"] == [
        "Asha Rao",
        "Junior Art Camp",
        "2026-12-20",
        "Hall A, Bengaluru",
        "Ravi",
        "NB-000001",
        "1500.00",
        "UPI",
    ]
    m = service.metrics()
    assert (m["attempts"], m["successes"], m["success_rate"], m["provider_calls"], m["error_rate"]) == (
        1,
        1,
        1.0,
        1,
        0.0,
    )


def test_null_wamid_is_accepted_not_confirmed(service, sandbox):
    sandbox.faults(null_wamid_rate=1.0)
    note = service.wait_status(service.book(1)["id"], "sent")
    assert note["reason"] == "accepted" and note["wamid"] is None


def test_invalid_token_answered_with_http_200_is_a_failure_not_retried(make_service, sandbox):
    service = make_service(ZAPTRA_API_TOKEN="not-the-sandbox-token")
    note = service.wait_status(service.book(1)["id"], "failed")
    assert note["reason"] == "invalid_token" and note["attempts"] == 1
    assert note["fallback"]["reason"] == "invalid_token"
    assert sandbox.stats()["requests"] == 1 and sandbox.messages() == []


def test_unknown_template_is_a_permanent_failure(make_service, sandbox):
    service = make_service(WHATSAPP_TEMPLATE_LANGUAGE="hi")
    note = service.wait_status(service.book(1)["id"], "failed")
    assert note["reason"] == "invalid_template" and note["fallback"] is not None


def test_rejected_number_is_not_retried_and_does_not_trip_the_breaker(make_service, sandbox):
    service = make_service(WHATSAPP_BREAKER_THRESHOLD=2)
    sandbox.faults(reject_phones=["919876543210"])
    for n in range(1, 4):
        note = service.wait_status(service.book(n)["id"], "failed")
        assert note["reason"] == "undeliverable" and note["attempts"] == 1
    assert service.metrics()["breaker_state"] == "closed"
    note = service.wait_status(service.book(4, phone="+91 91234 56789")["id"], "sent")
    assert note["attempts"] == 1


def test_invalid_phone_fails_the_notification_not_the_booking(service, sandbox):
    created = service.book(1, phone="12345")
    note = service.wait_status(created["id"], "failed")
    assert note["reason"] == "invalid_phone" and note["fallback"]["reason"] == "invalid_phone"
    assert sandbox.stats()["requests"] == 0
    m = service.metrics()
    assert m["invalid_phone"] == 1 and m["attempts"] == 0 and m["success_rate"] is None


def test_5xx_is_retried_with_backoff_on_the_injected_clock(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_BASE_MS=10_000)
    sandbox.faults(http_5xx_rate=1.0)
    booking = service.book(1)["id"]
    first = wait_until(
        lambda: (
            (n := service.notification(booking))["attempts"] == 1
            and n["status"] == "pending"
            and n["next_attempt_at"]
            and n
        ),
        what="first failed attempt",
    )
    assert first["reason"] == "http_503"
    delay = first["next_attempt_at"] - service.clock.time()
    assert 5.0 <= delay <= 10.0  # equal jitter on a 10 s base
    sandbox.faults(http_5xx_rate=0.0)
    service.clock.advance(delay - 0.5)
    wait_until(lambda: sandbox.stats()["requests"] == 1, what="no early retry")
    assert service.notification(booking)["status"] == "pending"
    service.clock.advance(1.0)
    note = service.wait_status(booking, "sent")
    assert note["attempts"] == 2 and len(sandbox.messages()) == 1
    m = service.metrics()
    assert (m["provider_calls"], m["provider_errors"], m["error_rate"], m["success_rate"]) == (2, 1, 0.5, 1.0)


def test_429_honours_retry_after(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_BASE_MS=100)
    sandbox.faults(rate_limit_rate=1.0, retry_after_seconds=120)
    booking = service.book(1)["id"]
    # a new notification is pending and due at once: wait for the attempt's answer, not just a due time
    first = wait_until(lambda: (n := service.notification(booking))["reason"] == "rate_limited" and n)
    assert first["attempts"] == 1 and first["next_attempt_at"] - service.clock.time() >= 120
    sandbox.faults(rate_limit_rate=0.0)
    service.clock.advance(119)
    wait_until(lambda: sandbox.stats()["requests"] == 1)
    assert service.notification(booking)["status"] == "pending"
    service.clock.advance(2)
    assert service.wait_status(booking, "sent")["attempts"] == 2


def test_429_storm_exhausts_retries_then_falls_back(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_ATTEMPTS=2, WHATSAPP_RETRY_BASE_MS=100, WHATSAPP_BREAKER_THRESHOLD=100)
    sandbox.faults(rate_limit_rate=1.0, retry_after_seconds=1)
    booking = service.book(1)["id"]
    for calls in (1, 2):
        # advance only once the retry is scheduled, or the schedule would start after the jump
        wait_until(
            lambda c=calls: (
                (n := service.notification(booking))["attempts"] == c
                and n["status"] == "pending"
                and n["next_attempt_at"]
            ),
            what=f"retry {calls} scheduled",
        )
        service.clock.advance(2)
    note = service.wait_status(booking, "failed")
    assert note["reason"] == "retries_exhausted:rate_limited" and note["attempts"] == 3
    assert note["fallback"]["reason"] == "retries_exhausted:rate_limited"
    assert sandbox.stats()["requests"] == 3 and sandbox.messages() == []


def test_hanging_provider_times_out_once_and_is_never_resent(make_service, sandbox):
    service = make_service(WHATSAPP_TIMEOUT_MS=300)
    sandbox.faults(hang_rate=1.0, hang_seconds=3)
    booking = service.book(1)["id"]
    note = service.wait_status(booking, "failed")
    assert note["reason"] == "timeout" and note["attempts"] == 1
    assert note["fallback"]["reason"] == "timeout"
    service.clock.advance(3600)
    sandbox.faults(hang_rate=0.0)
    service.book(2)  # the worker keeps running; booking 1 is not picked up again
    service.wait_status(2, "sent")
    assert [m["parameters"][5] for m in sandbox.messages()] == ["NB-000002"]


def test_garbage_on_200_is_unconfirmed_and_never_resent(service, sandbox):
    sandbox.faults(malformed_rate=1.0)
    note = service.wait_status(service.book(1)["id"], "failed")
    assert note["reason"] == "malformed_response" and note["attempts"] == 1 and note["fallback"]
    service.clock.advance(3600)
    sandbox.faults(malformed_rate=0.0)
    service.wait_status(service.book(2)["id"], "sent")
    assert len(sandbox.messages()) == 2  # the sandbox did record the first one: it was sent once, not twice


def test_circuit_breaker_opens_fails_fast_and_closes_after_reset(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_ATTEMPTS=0, WHATSAPP_BREAKER_THRESHOLD=5, WHATSAPP_BREAKER_RESET_MS=60_000)
    sandbox.faults(http_5xx_rate=1.0)
    for n in range(1, 6):
        assert service.wait_status(service.book(n)["id"], "failed")["reason"] == "retries_exhausted:http_503"
    assert service.metrics()["breaker_state"] == "open"
    note = service.wait_status(service.book(6)["id"], "failed")
    assert note["reason"] == "circuit_open" and note["fallback"]["reason"] == "circuit_open"
    assert sandbox.stats()["requests"] == 5  # failed fast, the provider was not called
    assert service.http.get("/api/whatsapp/health").json()["status"] == "down"
    sandbox.faults(http_5xx_rate=0.0)
    service.clock.advance(60)
    assert service.wait_status(service.book(7)["id"], "sent")["attempts"] == 1
    m = service.metrics()
    assert m["breaker_state"] == "closed" and m["breaker_activations"] == 1
    assert m["failure_reasons"] == {"retries_exhausted:http_503": 5, "circuit_open": 1}
    assert m["fallbacks"] == 6
    assert any(e["event"] == "breaker_open" for e in service.log_events())


def test_half_open_probe_failure_reopens_and_counts_a_second_activation(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_ATTEMPTS=0, WHATSAPP_BREAKER_THRESHOLD=2, WHATSAPP_BREAKER_RESET_MS=10_000)
    sandbox.faults(http_5xx_rate=1.0)
    for n in (1, 2):
        service.wait_status(service.book(n)["id"], "failed")
    service.clock.advance(10)
    assert service.wait_status(service.book(3)["id"], "failed")["reason"] == "retries_exhausted:http_503"
    assert service.wait_status(service.book(4)["id"], "failed")["reason"] == "circuit_open"
    assert service.metrics()["breaker_activations"] == 2


def test_fallback_disabled_fails_without_a_fallback_row(make_service, sandbox):
    service = make_service(WHATSAPP_FALLBACK_ENABLED=False, ZAPTRA_API_TOKEN="wrong-token-123")
    note = service.wait_status(service.book(1)["id"], "failed")
    assert note["fallback"] is None


def test_sandbox_token_is_checked_per_request(service, sandbox):
    # a token change in the env file takes effect without restart
    service.set_env(ZAPTRA_API_TOKEN="rotated-but-wrong")
    note = service.wait_status(service.book(1)["id"], "failed")
    assert note["reason"] == "invalid_token"
    service.set_env(ZAPTRA_API_TOKEN=SANDBOX_TOKEN)
    assert service.wait_status(service.book(2)["id"], "sent")


def test_phone_is_sent_in_one_consistent_form_whatever_was_typed(service, sandbox):
    for n, typed in enumerate(["9876543210", "09876543210", "+91 98765 43210", PHONE], start=1):
        service.wait_status(service.book(n, phone=typed)["id"], "sent")
    assert {m["phone"] for m in sandbox.messages()} == {"919876543210"}
