"""What one call to the provider came to, and how to read wpbox's answers.

wpbox answers some failures with HTTP 200 and ``"status": "error"``, so a send succeeded only on
HTTP 2xx *and* ``"status": "success"``. :func:`classify_response` is pure, so every answer shape
is tested as data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    """How the outbox must treat an outcome."""

    SUCCESS = "success"
    #: the provider said it did not send: safe to retry later
    TRANSIENT = "transient"
    #: retrying cannot help (bad token, template, recipient)
    PERMANENT = "permanent"
    #: the request may have been sent but no answer says so (read timeout, garbage on 2xx);
    #: resending could confirm a booking twice, so it is never retried
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True)
class Outcome:
    """The result of one provider call."""

    kind: Kind
    reason: str
    http_status: int | None = None
    message_id: int | str | None = None
    wamid: str | None = None
    meta_code: int | None = None
    detail: str = ""
    retry_after: float | None = None
    #: does this failure say something about the provider as a whole (feeds the circuit breaker)?
    systemic: bool = True
    latency_ms: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.kind is Kind.SUCCESS


# Meta error codes (REFERENCE.md section 1): retryable or not, and whether they are about the
# recipient (do not open the breaker) or about the sender (do).
_META: dict[int, tuple[Kind, str, bool]] = {
    131026: (Kind.PERMANENT, "undeliverable", False),
    131047: (Kind.PERMANENT, "outside_24h_window", False),
    130429: (Kind.TRANSIENT, "throughput_limit", False),
    131056: (Kind.TRANSIENT, "pair_rate_limit", False),
    131048: (Kind.PERMANENT, "spam_limit", True),
    131049: (Kind.PERMANENT, "not_delivered_by_meta", False),
    132000: (Kind.PERMANENT, "template_param_mismatch", True),
    132001: (Kind.PERMANENT, "template_not_found", True),
    132015: (Kind.PERMANENT, "template_paused", True),
    131000: (Kind.TRANSIENT, "meta_generic_error", True),
    131016: (Kind.TRANSIENT, "meta_unavailable", True),
}
_META_CODE = re.compile(r"\(#(\d{3,7})\)")
#: seconds to wait after a pair-rate-limit answer (Meta allows about 1 message per 6 s per recipient)
PAIR_RATE_WAIT = 6.0
#: answers that say "slow down" for the whole sender: every send pauses (a shared back-off)
SENDER_RATE_LIMITS = ("rate_limited", "throughput_limit")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form); None when absent or unusable."""
    if not value:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _error_text(body: dict[str, Any]) -> str:
    if isinstance(body.get("errors"), dict):
        parts = []
        for name, messages in body["errors"].items():
            text = "; ".join(str(m) for m in messages) if isinstance(messages, list) else str(messages)
            parts.append(f"{name}: {text}")
        return ", ".join(parts)
    return str(body.get("message") or body.get("error") or "")[:500]


def classify_response(status: int, content: bytes, retry_after: str | None = None) -> Outcome:
    """Read one HTTP answer of a wpbox send endpoint."""
    try:
        body = json.loads(content) if content else None
    except (ValueError, UnicodeDecodeError):
        body = None
    if status == 429:
        # rate limiting is not an outage: it slows the sender down and never feeds the breaker
        return Outcome(
            Kind.TRANSIENT, "rate_limited", status, retry_after=parse_retry_after(retry_after), systemic=False
        )
    if status >= 500:
        return Outcome(Kind.TRANSIENT, f"http_{status}", status, retry_after=parse_retry_after(retry_after))
    if not isinstance(body, dict):
        if 200 <= status < 300:
            # the provider may well have sent the message: never resend
            return Outcome(Kind.AMBIGUOUS, "malformed_response", status, detail="answer is not a JSON object")
        return Outcome(Kind.PERMANENT, f"http_{status}", status, detail="answer is not a JSON object")
    if 200 <= status < 300 and body.get("status") == "success":
        wamid = body.get("message_wamid")
        return Outcome(
            Kind.SUCCESS,
            "accepted" if wamid is None else "sent",
            status,
            message_id=body.get("message_id"),
            wamid=wamid if isinstance(wamid, str) else None,
            data=body,
        )
    text = _error_text(body)
    if 400 <= status < 500 and isinstance(body.get("errors"), dict):
        recipient_only = set(body["errors"]) <= {"phone"}
        return Outcome(Kind.PERMANENT, "validation_error", status, detail=text, systemic=not recipient_only)
    match = _META_CODE.search(text)
    if match:
        code = int(match.group(1))
        kind, reason, systemic = _META.get(code, (Kind.PERMANENT, f"meta_{code}", True))
        wait = PAIR_RATE_WAIT if code == 131056 else None
        return Outcome(kind, reason, status, meta_code=code, detail=text, systemic=systemic, retry_after=wait)
    lowered = text.lower()
    if "token" in lowered:
        return Outcome(Kind.PERMANENT, "invalid_token", status, detail=text)
    if "template" in lowered:
        return Outcome(Kind.PERMANENT, "invalid_template", status, detail=text)
    if 200 <= status < 300 and body.get("status") != "error":
        return Outcome(Kind.AMBIGUOUS, "unexpected_response", status, detail=f"status field is {body.get('status')!r}")
    return Outcome(Kind.PERMANENT, "provider_error" if status < 300 else f"http_{status}", status, detail=text)
