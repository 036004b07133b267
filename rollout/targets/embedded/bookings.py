"""The synthetic bookings rollout makes: smoke checks, scenarios, load, the demo's customers."""

from __future__ import annotations

#: a valid Indian mobile number, the default for every synthetic booking
TEST_PHONE = "+919876543210"


def synthetic_booking(
    ref: str, customer_id: str, phone: str = TEST_PHONE, event: str = "Rollout check", amount: str = "0"
) -> dict[str, str]:
    """A ``POST /api/bookings`` body; ``ref`` names where it comes from (``SMOKE-...``, ``LOAD-...``)."""
    return {
        "customer_id": customer_id,
        "parent_name": "Test Parent",
        "child_name": "Test Child",
        "phone": phone,
        "event_name": event,
        "venue": "Test Venue",
        "event_date": "2030-01-01",
        "booking_ref": ref,
        "amount": amount,
        "payment_method": "UPI",
    }
