"""The faults the sandbox can inject, changeable while it runs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

_Rate = Field(0.0, ge=0.0, le=1.0)


class Faults(BaseModel):
    """Each rate is a probability per request, drawn from the sandbox's seeded generator.

    Order of application: hang, latency, 5xx, 429, then the normal wpbox logic (token, fields,
    template, rejected numbers, ``error_rate``), then ``malformed_rate`` on what would have been a
    success (the message *is* recorded: the trap where the provider sent it but answered garbage).
    """

    model_config = ConfigDict(extra="forbid")

    #: answer HTTP 200 {"status":"error","message": error_message} instead of sending
    error_rate: float = _Rate
    error_message: str = "(#131000) Something went wrong"
    #: added to every request, in milliseconds
    latency_ms: float = Field(0.0, ge=0.0, le=120_000)
    #: hold the request for hang_seconds, then answer 504 without sending
    hang_rate: float = _Rate
    hang_seconds: float = Field(30.0, ge=0.0, le=300.0)
    http_5xx_rate: float = _Rate
    http_5xx_status: int = Field(503, ge=500, le=599)
    rate_limit_rate: float = _Rate
    retry_after_seconds: int = Field(1, ge=0, le=3600)
    #: record the message, then answer a body that is not JSON
    malformed_rate: float = _Rate
    #: message_wamid null on success (accepted, not confirmed by Meta)
    null_wamid_rate: float = _Rate
    #: numbers (digits only, with country code) that Meta refuses, and the code it uses
    reject_phones: list[str] = Field(default_factory=list, max_length=10_000)
    reject_code: int = 131026


class FaultsPatch(BaseModel):
    """A partial update of :class:`Faults` (``PATCH /sandbox/faults``)."""

    model_config = ConfigDict(extra="forbid")

    error_rate: float | None = Field(None, ge=0.0, le=1.0)
    error_message: str | None = None
    latency_ms: float | None = Field(None, ge=0.0, le=120_000)
    hang_rate: float | None = Field(None, ge=0.0, le=1.0)
    hang_seconds: float | None = Field(None, ge=0.0, le=300.0)
    http_5xx_rate: float | None = Field(None, ge=0.0, le=1.0)
    http_5xx_status: int | None = Field(None, ge=500, le=599)
    rate_limit_rate: float | None = Field(None, ge=0.0, le=1.0)
    retry_after_seconds: int | None = Field(None, ge=0, le=3600)
    malformed_rate: float | None = Field(None, ge=0.0, le=1.0)
    null_wamid_rate: float | None = Field(None, ge=0.0, le=1.0)
    reject_phones: list[str] | None = Field(None, max_length=10_000)
    reject_code: int | None = None
