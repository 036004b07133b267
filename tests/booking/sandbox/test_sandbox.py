"""The sandbox speaks wpbox: fields, shapes and quirks; faults change while it runs."""

from __future__ import annotations

import httpx
import pytest

from tests.support.harness import SANDBOX_TOKEN


def send(sandbox, **fields):
    body = {
        "token": SANDBOX_TOKEN,
        "phone": "919876543210",
        "template_name": "hello_world",
        "template_language": "en_US",
        **fields,
    }
    return httpx.post(f"{sandbox.api_url}/sendtemplatemessage", json=body)


def test_success_shape(sandbox):
    response = send(sandbox)
    assert response.status_code == 200
    assert response.json() == {"status": "success", "message_id": 1, "message_wamid": "wamid.SANDBOX000000000001"}


def test_wrong_token_and_unknown_template_answer_200_with_status_error(sandbox):
    assert send(sandbox, token="nope").json() == {"status": "error", "message": "Invalid token"}
    response = send(sandbox, template_language="hi")
    assert response.status_code == 200 and response.json()["message"] == "Invalid template"


def test_missing_fields_answer_400_with_laravel_errors(sandbox):
    response = httpx.post(f"{sandbox.api_url}/sendtemplatemessage", json={"token": SANDBOX_TOKEN})
    assert response.status_code == 400
    assert response.json()["errors"]["phone"] == ["The phone field is required."]


def test_template_parameter_count_is_checked(sandbox):
    response = send(
        sandbox,
        template_name="booking_confirmation",
        components=[{"type": "body", "parameters": [{"type": "text", "text": "only one"}]}],
    )
    assert "(#132000)" in response.json()["message"]


def test_get_endpoints_take_the_token_as_query(sandbox):
    assert httpx.get(f"{sandbox.api_url}/getTemplates", params={"token": SANDBOX_TOKEN}).json()["status"] == "success"
    assert httpx.get(f"{sandbox.api_url}/getTemplates").json()["message"] == "Invalid token"
    send(sandbox)
    contact = httpx.get(f"{sandbox.api_url}/getSingleContact", params={"token": SANDBOX_TOKEN, "phone": "919876543210"})
    assert contact.json()["contact"]["messages"] == 1


def test_control_needs_the_token_and_validates_faults(sandbox):
    assert httpx.get(f"{sandbox.url}/sandbox/faults").status_code == 401
    response = sandbox.http.patch("/sandbox/faults", json={"error_rate": 2})
    assert response.status_code == 422 and "error_rate" in response.json()["fields"]
    response = sandbox.http.patch("/sandbox/faults", json={"nonsense": 1})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("faults", "status", "check"),
    [
        ({"http_5xx_rate": 1.0}, 503, None),
        ({"rate_limit_rate": 1.0, "retry_after_seconds": 9}, 429, lambda r: r.headers["retry-after"] == "9"),
        ({"error_rate": 1.0}, 200, lambda r: r.json()["message"] == "(#131000) Something went wrong"),
        ({"reject_phones": ["919876543210"], "reject_code": 131049}, 200, lambda r: "(#131049)" in r.text),
        ({"malformed_rate": 1.0}, 200, lambda r: r.text.startswith("<html>")),
        ({"hang_rate": 1.0, "hang_seconds": 0.1}, 504, None),
    ],
)
def test_faults(sandbox, faults, status, check):
    sandbox.faults(**faults)
    response = send(sandbox)
    assert response.status_code == status
    if check:
        assert check(response)


def test_latency_and_reset(sandbox):
    sandbox.faults(latency_ms=200)
    assert send(sandbox).elapsed.total_seconds() >= 0.2
    sandbox.http.post("/sandbox/reset")
    assert sandbox.messages() == [] and sandbox.http.get("/sandbox/faults").json()["latency_ms"] == 0
