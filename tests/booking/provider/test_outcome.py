"""Every wpbox answer shape, as data: (HTTP status, body, Retry-After) -> kind, reason, systemic."""

import json

import pytest

from rollout.booking.provider.outcome import Kind, classify_response, parse_retry_after

CASES = [
    # success, and success without Meta's id (queued: accepted, not confirmed)
    (200, {"status": "success", "message_id": 455, "message_wamid": "wamid.HBg"}, None, Kind.SUCCESS, "sent", True),
    (200, {"status": "success", "message_id": 456, "message_wamid": None}, None, Kind.SUCCESS, "accepted", True),
    # the trap: errors with HTTP 200
    (200, {"status": "error", "message": "Invalid token"}, None, Kind.PERMANENT, "invalid_token", True),
    (200, {"status": "error", "message": "Invalid template"}, None, Kind.PERMANENT, "invalid_template", True),
    (
        200,
        {"status": "error", "message": "(#131026) Message Undeliverable."},
        None,
        Kind.PERMANENT,
        "undeliverable",
        False,
    ),
    (
        200,
        {"status": "error", "message": "(#131047) Re-engagement message"},
        None,
        Kind.PERMANENT,
        "outside_24h_window",
        False,
    ),
    (200, {"status": "error", "message": "(#130429) Rate limit hit"}, None, Kind.TRANSIENT, "throughput_limit", False),
    (
        200,
        {"status": "error", "message": "(#131056) Pair rate limit hit"},
        None,
        Kind.TRANSIENT,
        "pair_rate_limit",
        False,
    ),
    (
        200,
        {"status": "error", "message": "(#132000) Number of parameters does not match"},
        None,
        Kind.PERMANENT,
        "template_param_mismatch",
        True,
    ),
    (200, {"status": "error", "message": "(#132015) Template paused"}, None, Kind.PERMANENT, "template_paused", True),
    (200, {"status": "error", "message": "(#999999) New Meta code"}, None, Kind.PERMANENT, "meta_999999", True),
    (200, {"status": "error", "message": "Something odd"}, None, Kind.PERMANENT, "provider_error", True),
    # validation errors: only the phone is the recipient's fault
    (
        400,
        {"status": "error", "errors": {"phone": ["The phone field is required."]}},
        None,
        Kind.PERMANENT,
        "validation_error",
        False,
    ),
    (
        400,
        {"status": "error", "errors": {"template_name": ["required"]}},
        None,
        Kind.PERMANENT,
        "validation_error",
        True,
    ),
    # transport-level answers
    (429, {"status": "error", "message": "Too Many Requests"}, "7", Kind.TRANSIENT, "rate_limited", False),
    (503, "Service Unavailable", None, Kind.TRANSIENT, "http_503", True),
    (500, {"status": "error"}, None, Kind.TRANSIENT, "http_500", True),
    (404, "Not Found", None, Kind.PERMANENT, "http_404", True),
    # garbage on 2xx: the message may have gone out; never resend
    (200, "<html>oops</html>", None, Kind.AMBIGUOUS, "malformed_response", True),
    (200, [1, 2, 3], None, Kind.AMBIGUOUS, "malformed_response", True),
    (200, {"status": "queued"}, None, Kind.AMBIGUOUS, "unexpected_response", True),
]


@pytest.mark.parametrize(("status", "body", "retry_after", "kind", "reason", "systemic"), CASES)
def test_classify_response(status, body, retry_after, kind, reason, systemic):
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    outcome = classify_response(status, content, retry_after)
    assert (outcome.kind, outcome.reason, outcome.systemic) == (kind, reason, systemic)
    assert outcome.ok is (kind is Kind.SUCCESS)


def test_retry_after_and_meta_waits():
    assert classify_response(429, b"{}", "7").retry_after == 7.0
    assert classify_response(200, b'{"status":"error","message":"(#131056) pair"}').retry_after == 6.0
    assert parse_retry_after("soon") is None and parse_retry_after("-1") is None and parse_retry_after(None) is None


def test_success_keeps_provider_ids():
    outcome = classify_response(200, b'{"status":"success","message_id":455,"message_wamid":"wamid.X"}')
    assert (outcome.message_id, outcome.wamid) == (455, "wamid.X")
