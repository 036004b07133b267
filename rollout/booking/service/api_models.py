"""Request bodies of the service's API (unknown fields are refused)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

_Text = Field(min_length=1, max_length=200)


class BookingIn(BaseModel):
    """``POST /api/bookings``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_id: str = Field(min_length=1, max_length=64)
    parent_name: str = _Text
    child_name: str = _Text
    phone: str = Field(min_length=1, max_length=32)
    event_name: str = _Text
    venue: str = _Text
    event_date: dt.date
    booking_ref: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
    amount: Annotated[
        Decimal,
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "number", "minimum": 0, "maximum": 10_000_000, "multipleOf": 0.01},
                    {"type": "string", "pattern": r"^[0-9]{1,8}(\.[0-9]{1,2})?$"},
                ]
            }
        ),
    ] = Field(ge=0, le=Decimal("10000000"), decimal_places=2)
    payment_method: str = Field(min_length=1, max_length=50)


class TestMessageIn(BaseModel):
    """``POST /api/whatsapp/test``: a template message by default, free text when ``message`` is set."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    phone: str = Field(min_length=1, max_length=32)
    message: str | None = Field(None, min_length=1, max_length=4096)


class PreferencesIn(BaseModel):
    """``PUT /api/customer/{id}/preferences``."""

    model_config = ConfigDict(extra="forbid")

    whatsapp_opt_out: bool


class FlagHintIn(BaseModel):
    """``POST /api/whatsapp/flag/refresh``: optional; Unleash's webhook sends its event (``type``,
    ``featureName``, ``project``, ``environment``, ...). Never trusted for the flag's value: a hint
    for another feature is ignored, any other only makes the service re-read its flag."""

    model_config = ConfigDict(extra="allow")

    type: str | None = Field(None, max_length=200)
    featureName: str | None = Field(None, max_length=200)  # Unleash's field name
