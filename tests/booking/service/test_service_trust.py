"""The service under an attacker's and a provider's pressure: phones in provider text, a 429 storm,
huge headers, and an OpenAPI document that tells the truth (checked by schemathesis)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rollout.booking.phones import mask_in_text, mask_known
from rollout.engine.project import Project
from rollout.engine.runner import rollback
from rollout.util.redact import Redactor
from tests.cli.test_cli_engine import project  # noqa: F401 - fixture
from tests.support.harness import ADMIN_TOKEN, wait_until

PHONE = "+919812345678"
FORMS = ["919812345678", "+919812345678", "+91 98123 45678", "098123 45678", "09812345678", "9812345678"]


@pytest.mark.parametrize(
    "text",
    [
        "Message undeliverable to 919876543210.",
        "recipient:919876543210",
        "tel:+919876543210",
        "+91 98765 43210.",
        "to (+91) 98765-43210!",
        "phone=919876543210&x=1",
        "[919876543210]",
        "'9876543210'",
    ],
)
def test_a_phone_is_masked_whatever_punctuation_surrounds_it(text):
    masked = mask_in_text(text)
    assert "98765" not in masked and "3210" in masked, masked


@pytest.mark.parametrize(
    "text",
    [
        ".rollout/demo/20261124-203903/incidents/production-20261124T203903123456Z.md",
        "at 2026-11-24 20:39:03.123Z",
        "20261124203903",
        "ts=1764016743.123456",
        "epoch ms 1764016743123",
        "(#131026) code",
        "booking 455 of 12",
    ],
)
def test_paths_timestamps_and_numbers_are_never_masked(text):
    assert mask_in_text(text) == text
    assert Redactor(["secret-value-123"]).text(text) == text


@pytest.mark.parametrize("form", FORMS)
def test_the_bookings_own_phone_is_masked_in_every_form(form):
    assert "9812345678" not in mask_known(f"provider said {form}x and {form}", PHONE)


def test_a_provider_error_echoing_the_phone_never_shows_it(make_service, sandbox):
    service = make_service(WHATSAPP_RETRY_ATTEMPTS=0, WHATSAPP_DEBUG=True)
    sandbox.faults(
        error_rate=1.0,
        error_message="(#131026) Message undeliverable to 919812345678. "
        "tel:+919812345678 recipient:919812345678 +91 98123 45678.",
    )
    booking = service.book(1, phone=PHONE)["id"]
    note = service.wait_status(booking, "failed")
    health = service.http.get("/api/whatsapp/health").json()
    everything = "\n".join(
        [
            str(note["last_error"]),
            str(health["last_error"]),
            service.log_file.read_text(),
            service.http.get(f"/api/bookings/{booking}", headers=service.admin).text,
            service.http.get("/api/whatsapp/fallbacks", headers=service.admin).text,
        ]
    )
    assert "undeliverable to +91******5678." in note["last_error"]
    assert "+91******5678" in health["last_error"]["detail"]
    for digits in ("9812345678", "98123 45678"):
        assert digits not in everything


@pytest.mark.slow
def test_the_incident_report_never_shows_the_phone(project, sandbox):  # noqa: F811
    cwd, service = project
    service.set_env(WHATSAPP_NOTIFICATIONS_ENABLED=True, WHATSAPP_ROLLOUT_PERCENT=100, WHATSAPP_RETRY_ATTEMPTS=0)
    sandbox.faults(error_rate=1.0, error_message="(#131026) Message undeliverable to 919812345678.")
    service.wait_status(service.book(1, phone=PHONE)["id"], "failed")
    outcome = rollback(
        Project(cwd / "playbooks" / "whatsapp.yaml", cwd / "environments", cwd / ".rollout" / "state.db"),
        "production",
        "phones",
        _clock(),
    )
    report = Path(outcome.details["incident_report"]).read_text()
    assert "undeliverable to +91******5678" in report and "9812345678" not in report


def _clock():
    from rollout.util.clock import SystemClock

    return SystemClock()


@pytest.mark.slow
def test_a_429_storm_slows_the_sender_and_never_opens_the_breaker(make_service, sandbox):
    service = make_service(WHATSAPP_BREAKER_THRESHOLD=2, WHATSAPP_RETRY_ATTEMPTS=3)
    sandbox.faults(rate_limit_rate=1.0, retry_after_seconds=30)
    first = service.book(1)["id"]
    wait_until(
        lambda: (n := service.notification(first))["status"] == "pending" and n["attempts"] == 1,
        what="the first attempt rate-limited",
    )
    health = service.http.get("/api/whatsapp/health").json()
    assert health["breaker"]["state"] == "closed" and health["breaker"]["activations"] == 0
    assert health["sending_paused_until"] == pytest.approx(service.clock.time() + 30)
    # while the provider says "slow down", new confirmations wait (the clock stands still) instead of
    # hammering it: before the fix, each got one 429, the breaker opened, and all went to the fallback
    calls = sandbox.stats()["requests"]
    later = [service.book(n)["id"] for n in range(2, 21)]
    time.sleep(0.5)  # the worker polls every 50 ms: ten chances to send what it must not
    assert sandbox.stats()["requests"] == calls
    assert all((n := service.notification(b))["status"] == "pending" and n["attempts"] == 0 for b in later)
    # the storm passes; after Retry-After everything goes out, nothing to the fallback
    sandbox.faults(rate_limit_rate=0.0)
    service.clock.advance(31)
    for booking in [first, *later]:
        assert service.wait_status(booking, "sent")["fallback"] is None
    assert service.metrics()["breaker_activations"] == 0 and service.metrics()["fallbacks"] == 0


def test_huge_headers_are_refused_with_431(service):
    response = service.http.get("/api/whatsapp/fallbacks", headers={"Authorization": "Bearer " + "x" * 1_000_000})
    assert response.status_code == 431 and response.json()["error"] == "headers_too_large"
    assert service.http.get("/api/whatsapp/fallbacks", headers=service.admin).status_code == 200


def test_405_names_every_method_of_the_path(service):
    response = service.http.delete("/api/customer/c1/preferences")
    assert response.status_code == 405 and response.headers["allow"] == "GET, PUT"
    assert response.json()["error"] == "method_not_allowed"


def test_the_openapi_document_tells_the_truth(service):
    schema = service.http.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"HTTPBearer", "APIKeyHeader"}
    booking = schema["paths"]["/api/bookings/{booking_id}"]["get"]
    assert booking["security"] and {"200", "401", "403", "404", "422", "431"} <= set(booking["responses"])
    assert "text/plain" in schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    amount = schema["components"]["schemas"]["BookingIn"]["properties"]["amount"]["anyOf"]
    assert any(a.get("pattern") for a in amount)  # "" is not a valid amount by the schema either
    invalid = service.http.post("/api/bookings", json={"amount": ""}).json()
    assert invalid["error"] == "invalid_request" and "amount" in invalid["detail"] and invalid["fields"]


SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.slow
@pytest.mark.parametrize("token", [None, ADMIN_TOKEN], ids=["anonymous", "admin"])
def test_schemathesis_finds_no_failure(service, token):
    """Every operation, with and without the admin token: no 5xx, every status and content type
    documented, every answer matching its schema. Seeded and bounded (about 600 requests, seconds)."""
    args = [
        str(SCHEMATHESIS),
        "run",
        f"{service.url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--max-examples",
        "25",
        "--seed",
        "20261125",
        "--no-color",
        "--request-timeout",
        "10",
    ]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 300, proc.stdout[-3000:]
