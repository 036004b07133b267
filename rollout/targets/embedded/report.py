"""What an incident report says of the embedded service: its failures and fallback outbox over the
sample window, and what its flag stops (``report.md.j2``, rendered into the report's own template)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout.gates import fmt
from rollout.targets.embedded.client import EmbeddedClient
from rollout.targets.embedded.vocabulary import FLAG_VARIABLE
from rollout.util.errors import MeasurementError

#: the report's section of samples of the errors, rendered with the report's data
REPORT_FRAGMENT = Path(__file__).parent / "report.md.j2"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" if ts else "-"


def incident_facts(service: EmbeddedClient, window: float, flag_variable: str) -> dict[str, Any]:
    """The report's data of the service over the last ``window`` seconds; what it could not read is
    said in ``service_error``. Phones come masked by the service (the report's redactor masks
    anything it missed)."""
    ours = flag_variable == FLAG_VARIABLE
    data: dict[str, Any] = {
        "feature": "WhatsApp notifications" if ours else f"the feature behind {flag_variable}",
        "flag_note": (
            "No code rollback is needed: the feature flag stops every WhatsApp send; confirmations that could not "
            "go by WhatsApp\nare in the service's fallback outbox."
            if ours
            else None
        ),
        "fallback_samples": [],
        "failure_reasons": {},
        "service_error": None,
        "last_error": None,
        "fallbacks": 0,
        "success_rate": "no data",
        "error_rate": "no data",
        "attempts": 0,
    }
    try:
        answer = service.metrics(window)
        data.update(
            failure_reasons=answer.get("failure_reasons") or {},
            fallbacks=answer.get("fallbacks", 0),
            attempts=answer.get("attempts", 0),
            success_rate=fmt("success_rate", answer.get("success_rate")),
            error_rate=fmt("error_rate", answer.get("error_rate")),
        )
        health = service.health()
        last = health.get("last_error") or {}
        data["last_error"] = f"{last.get('reason')}: {last.get('detail')}" if last else None
        fallbacks = service.fallbacks(10)
        if fallbacks is not None:
            data["fallback_samples"] = [
                {
                    "booking_ref": f["booking_ref"],
                    "phone": f["phone"],
                    "reason": f["reason"],
                    "at": _when(f["created_at"]),
                }
                for f in fallbacks
            ]
    except MeasurementError as exc:
        data["service_error"] = str(exc)
    data["impact"] = (
        "_To fill in: customers who got a failed WhatsApp attempt are in the fallback outbox "
        f"({data['fallbacks']} in the sample window); check that the fallback channel delivered them._"
    )
    return data
