"""The service's HTTP API: bad input, admin endpoints, health, metrics, templates, privacy."""

from __future__ import annotations

import re

import pytest

from tests.support.harness import ADMIN_TOKEN, PHONE, SANDBOX_TOKEN, booking_body, wait_until


def _count_bookings(service) -> int:
    return service.metrics()["outbox"]["pending"] + sum(
        service.metrics()["outbox"][k] for k in ("sending", "sent", "failed", "skipped")
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({k: v for k, v in booking_body(1).items() if k != "phone"}, 422, "phone"),
        ({**booking_body(1), "amount": "lots"}, 422, "amount"),
        ({**booking_body(1), "amount": "-5"}, 422, "amount"),
        ({**booking_body(1), "amount": "10.123"}, 422, "amount"),
        ({**booking_body(1), "event_date": "next friday"}, 422, "event_date"),
        ({**booking_body(1), "customer_id": ""}, 422, "customer_id"),
        ({**booking_body(1), "surprise": 1}, 422, "surprise"),
        ({**booking_body(1), "booking_ref": "../etc"}, 422, "booking_ref"),
        ([1, 2], 422, "body"),
    ],
)
def test_invalid_bookings_get_a_4xx_naming_the_field_and_store_nothing(service, body, status, field):
    response = service.http.post("/api/bookings", json=body)
    assert response.status_code == status
    assert field in response.json()["fields"]
    assert _count_bookings(service) == 0


def test_malformed_json_and_oversized_bodies(service):
    response = service.http.post("/api/bookings", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "malformed_json"
    big = {**booking_body(1), "venue": "x" * 100_000}
    response = service.http.post("/api/bookings", json=big)
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"

    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    response = service.http.post("/api/bookings", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert _count_bookings(service) == 0


def test_duplicate_booking_reference_is_refused(service, sandbox):
    service.book(1)
    response = service.http.post("/api/bookings", json=booking_body(1))
    assert response.status_code == 409 and response.json()["error"] == "duplicate_booking"
    service.wait_status(1, "sent")
    assert len(sandbox.messages()) == 1


def test_unknown_booking_is_404(service):
    assert service.http.get("/api/bookings/999", headers=service.admin).status_code == 404
    assert service.http.get("/api/bookings/abc", headers=service.admin).status_code == 422
    # ids outside SQLite's 64 bits cannot exist: 404, never a 500 (it was an OverflowError)
    for huge in ("9223372036854775808", "-9223372036854775809", str(10**40), "0", "-1"):
        response = service.http.get(f"/api/bookings/{huge}", headers=service.admin)
        assert response.status_code == 404, (huge, response.text)
        response = service.http.get(f"/api/booking/{huge}/whatsapp-data", headers=service.admin)
        assert response.status_code == 404, (huge, response.text)


def test_reading_a_booking_needs_a_token(make_service):
    service = make_service(ROLLOUT_READ_TOKEN="reader-token-0123")
    booking = service.book(1)["id"]
    for headers in ({}, {"Authorization": "Bearer wrong-token-xyz"}):
        response = service.http.get(f"/api/bookings/{booking}", headers=headers)
        assert response.status_code == 401 and "customer_id" not in response.text
    # enumeration tells nothing either: a missing id without a token is 401 like an existing one
    assert service.http.get("/api/bookings/999").status_code == 401
    for token in ("reader-token-0123", service.admin["Authorization"][7:]):
        response = service.http.get(f"/api/bookings/{booking}", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200 and response.json()["customer_id"] == "cust-1"
    # the read token reads, and nothing more
    response = service.http.get("/api/whatsapp/fallbacks", headers={"Authorization": "Bearer reader-token-0123"})
    assert response.status_code == 401


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-xyz"}, {"Authorization": "Basic x"}])
def test_admin_endpoints_refuse_a_missing_or_wrong_token(service, headers):
    for method, path in [
        ("POST", "/api/whatsapp/test"),
        ("POST", "/api/whatsapp/templates/sync"),
        ("GET", "/api/whatsapp/fallbacks"),
        ("GET", "/api/booking/1/whatsapp-data"),
    ]:
        response = service.http.request(method, path, json={"phone": PHONE}, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"] == "unauthorized"


def test_admin_endpoints_are_off_without_an_admin_token(make_service):
    service = make_service(ROLLOUT_ADMIN_TOKEN="")
    response = service.http.post(
        "/api/whatsapp/test", json={"phone": PHONE}, headers={"Authorization": "Bearer anything-at-all"}
    )
    assert response.status_code == 403 and response.json()["error"] == "admin_disabled"


def test_test_endpoint_sends_and_reports_the_providers_verdict(service, sandbox):
    response = service.http.post("/api/whatsapp/test", json={"phone": "98765 43210"}, headers=service.admin)
    assert response.status_code == 200
    verdict = response.json()
    assert verdict["ok"] is True and verdict["phone"] == "+91******3210" and verdict["message_id"] == 1
    response = service.http.post("/api/whatsapp/test", json={"phone": PHONE, "message": "hello"}, headers=service.admin)
    assert response.status_code == 200
    assert [m["kind"] for m in sandbox.messages()] == ["template", "text"]
    # test sends are not customer notifications: the gates' figures stay clean
    assert service.metrics()["attempts"] == 0


def test_test_endpoint_invalid_phone_and_provider_errors(service, sandbox):
    response = service.http.post("/api/whatsapp/test", json={"phone": "5876543210"}, headers=service.admin)
    assert response.status_code == 422 and response.json() == {
        "error": "invalid_phone",
        "detail": "phone number is not a mobile number",
    }
    response = service.http.post("/api/whatsapp/test", json={}, headers=service.admin)
    assert response.status_code == 422 and "phone" in response.json()["fields"]
    sandbox.faults(error_rate=1.0, error_message="(#131047) Re-engagement message")
    response = service.http.post("/api/whatsapp/test", json={"phone": PHONE}, headers=service.admin)
    assert response.status_code == 502
    assert response.json()["reason"] == "outside_24h_window" and response.json()["meta_code"] == 131047


def test_health_reports_ok_then_down_on_a_wrong_token(service):
    health = service.http.get("/api/whatsapp/health").json()
    assert health["status"] == "ok" and health["provider"]["reachable"] is True
    assert health["breaker"]["state"] == "closed" and health["flag_enabled"] is True
    service.set_env(ZAPTRA_API_TOKEN="rotated-wrong-token")
    service.clock.advance(16)  # past the probe cache
    health = wait_until(
        lambda: (h := service.http.get("/api/whatsapp/health").json())["status"] == "down" and h, timeout=2
    )
    assert health["provider"]["authorized"] is False and health["provider"]["reason"] == "invalid_token"


def test_health_down_when_the_provider_is_unreachable(make_service):
    service = make_service(ZAPTRA_API_URL="http://127.0.0.1:9/api/wpbox")
    health = service.http.get("/api/whatsapp/health").json()
    assert health["status"] == "down" and health["provider"]["reachable"] is False
    assert "provider unreachable" in health["problems"]


def test_health_is_logged_on_schedule(make_service):
    service = make_service(WHATSAPP_HEALTH_LOG_INTERVAL_S=3600)
    assert not [e for e in service.log_events() if e["event"] == "health"]
    service.clock.advance(3600)
    entry = wait_until(lambda: [e for e in service.log_events() if e["event"] == "health"], timeout=5)[0]
    assert entry["status"] == "ok" and entry["flag_enabled"] is True


def test_metrics_window_and_prometheus_exposition(service, sandbox):
    for n in range(1, 4):
        service.wait_status(service.book(n)["id"], "sent")
    sandbox.faults(error_rate=1.0, error_message="(#131026) Message Undeliverable.")
    service.wait_status(service.book(4)["id"], "failed")
    m = service.metrics(window=60)
    assert (m["attempts"], m["successes"], m["failures"], m["fallbacks"]) == (4, 3, 1, 1)
    assert m["success_rate"] == 0.75 and m["error_rate"] == 0.25
    assert m["latency_samples"] == 4 and m["avg_latency_ms"] > 0 and m["p95_latency_ms"] >= m["avg_latency_ms"] * 0.5
    service.clock.advance(120)
    assert service.metrics(window=60)["attempts"] == 0
    assert service.metrics(window=60)["success_rate"] is None  # no data is not a pass
    assert service.http.get("/api/whatsapp/metrics", params={"window": 0}).status_code == 422
    text = service.http.get("/metrics").text
    assert 'rollout_whatsapp_notifications_total{outcome="sent",reason="sent"} 3.0' in text
    assert "rollout_whatsapp_provider_latency_seconds_bucket" in text
    assert "rollout_whatsapp_enabled 1.0" in text


def test_templates_sync_caches_the_providers_list(service, make_service):
    response = service.http.post("/api/whatsapp/templates/sync", headers=service.admin)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2 and body["configured_template"]["approved"] is True
    listed = service.http.get("/api/whatsapp/templates").json()["templates"]
    assert {(t["name"], t["language"]) for t in listed} == {("booking_confirmation", "en_US"), ("hello_world", "en_US")}


def test_templates_sync_reports_a_provider_error(make_service):
    service = make_service(ZAPTRA_API_TOKEN="definitely-wrong")
    response = service.http.post("/api/whatsapp/templates/sync", headers=service.admin)
    assert response.status_code == 502 and response.json()["reason"] == "invalid_token"


def test_whatsapp_data_gives_the_booking_with_the_full_phone_to_admins(service):
    service.book(1, phone="98765 43210")
    data = service.http.get("/api/booking/1/whatsapp-data", headers=service.admin).json()
    assert data["customer"]["phone"] == PHONE
    assert data["template"]["parameters"][5] == "NB-000001" and len(data["template"]["parameters"]) == 8
    assert service.http.get("/api/booking/77/whatsapp-data", headers=service.admin).status_code == 404


def test_no_token_and_no_full_phone_in_logs_or_public_responses(make_service, sandbox):
    service = make_service(WHATSAPP_DEBUG=True, WHATSAPP_RETRY_ATTEMPTS=0)
    outputs = []
    service.wait_status(service.book(1)["id"], "sent")
    sandbox.faults(error_rate=1.0, error_message="(#131026) Undeliverable to 919876543210 token " + SANDBOX_TOKEN)
    service.wait_status(service.book(2)["id"], "failed")
    outputs.append(service.http.post("/api/whatsapp/test", json={"phone": PHONE}, headers=service.admin).text)
    for path in ("/api/bookings/1", "/api/bookings/2", "/api/whatsapp/health", "/api/whatsapp/metrics", "/metrics"):
        outputs.append(service.http.get(path, headers=service.admin).text)
    outputs.append(service.http.get("/api/whatsapp/fallbacks", headers=service.admin).text)
    log_text = service.log_file.read_text()
    assert "provider_response" in log_text  # debug detail is there ...
    everything = "\n".join(outputs) + log_text
    assert SANDBOX_TOKEN not in everything and ADMIN_TOKEN not in everything  # ... but no secret
    assert "9876543210" not in everything  # ... and no full phone
    assert re.search(r"\+91\*{6}3210", everything)
