"""What the service answers, as the OpenAPI document declares it.

The handlers return plain dicts; these models only *document* them (``responses=``, never
``response_model=``), and the schemathesis run in the test suite checks every real answer
against them. Error answers share one shape, :class:`ErrorBody`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    """A documented object that may grow fields without breaking clients."""

    model_config = ConfigDict(extra="allow")


class ErrorBody(_Open):
    """Every 4xx/5xx answer: a stable machine-readable ``error`` and a human ``detail``."""

    error: str = Field(description="machine-readable cause, e.g. unauthorized, not_found, invalid_request")
    detail: str | None = Field(None, description="what went wrong, for a person")
    fields: dict[str, str] | None = Field(None, description="invalid_request only: field path -> problem")


class NotificationView(_Open):
    status: str
    reason: str | None
    attempts: int
    next_attempt_at: float | None
    last_error: str | None
    message_id: str | None
    wamid: str | None
    updated_at: float | None
    fallback: dict[str, Any] | None


class BookingCreated(_Open):
    id: int
    booking_ref: str
    notification: dict[str, str]


class BookingView(_Open):
    id: int
    booking_ref: str
    customer_id: str
    phone: str = Field(description="masked: country code and last four digits")
    event_name: str
    event_date: str
    created_at: float
    notification: NotificationView


class WhatsAppData(_Open):
    booking_id: int
    booking_ref: str
    customer: dict[str, Any]
    child_name: str
    event: dict[str, Any]
    venue: str
    amount: str
    payment_method: str
    template: dict[str, Any]
    notification: NotificationView


class Health(_Open):
    status: str = Field(description="ok, degraded or down")
    problems: list[str]
    flag_enabled: bool
    rollout_percent: int
    breaker: dict[str, Any]
    provider: dict[str, Any]
    recent: dict[str, Any]
    last_error: dict[str, Any] | None
    config_error: str | None
    outbox: dict[str, int]
    sending_paused_until: float | None
    replica_id: str | None
    flag_version: int | None
    #: where the flag comes from: envfile, postgres or unleash
    flag_provider: str
    #: wall time of the source's last successful read (null: the env file itself)
    flag_refreshed_at: float | None


class TestVerdict(_Open):
    ok: bool
    outcome: str
    reason: str
    phone: str
    http_status: int | None
    message_id: int | str | None
    wamid: str | None
    meta_code: int | None
    detail: str | None
    duration_ms: float
    breaker: str


class CohortSamples(_Open):
    metric: str
    window_seconds: float
    flag_enabled: bool
    rollout_percent: int
    treatment: list[float]
    control: list[float]


class WindowMetrics(_Open):
    window_seconds: float
    since: float
    until: float
    attempts: int
    successes: int
    failures: int
    failure_reasons: dict[str, int]
    invalid_phone: int
    fallbacks: int
    skipped: int
    skipped_by_reason: dict[str, int]
    provider_calls: int
    provider_errors: int
    success_rate: float | None
    error_rate: float | None
    avg_latency_ms: float | None
    p95_latency_ms: float | None
    latency_samples: int
    breaker_activations: int
    breaker_state: str
    flag_enabled: bool
    rollout_percent: int
    outbox: dict[str, int]
    config_error: str | None
    config_generation: int
    cohort_decisions: dict[str, int]
    replica_id: str | None
    flag_version: int | None
    #: where the flag comes from: envfile, postgres or unleash
    flag_provider: str
    #: wall time of the source's last successful read (null: the env file itself)
    flag_refreshed_at: float | None
    latency_sd_ms: float | None
    latency_above: dict[str, float] | None = None
    cohorts: dict[str, dict[str, float | None]]
    store: str
    scope: str


class TemplateRow(_Open):
    name: str
    language: str
    status: str | None
    category: str | None
    synced_at: float


class Templates(_Open):
    templates: list[TemplateRow]


class TemplatesSynced(_Open):
    count: int
    templates: list[TemplateRow]
    configured_template: dict[str, Any]


class ProviderError(ErrorBody):
    reason: str | None = None


class FallbackRow(_Open):
    id: int
    booking_id: int
    reason: str
    created_at: float
    booking_ref: str
    phone: str


class Fallbacks(_Open):
    fallbacks: list[FallbackRow]


class Preferences(_Open):
    customer_id: str
    whatsapp_opt_out: bool
    updated_at: float | None


class FlagRefresh(_Open):
    #: ``started`` (a re-read began), ``queued`` (one is already due: hints coalesce), ``not_needed``
    #: (the source follows its store live), ``ignored`` (a hint for another feature)
    refresh: str
    flag_provider: str
    detail: str


_STATUS_TEXT = {
    400: "malformed request (the body is not valid JSON)",
    401: "missing or wrong token",
    403: "admin endpoints are disabled (no ROLLOUT_ADMIN_TOKEN is set)",
    404: "no such resource",
    409: "conflict with the current state",
    413: "request body over 64 KiB",
    422: "a field is missing or invalid",
    431: "request headers too large",
    502: "the WhatsApp provider failed or answered nonsense",
}


def errors(*statuses: int, **models: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status with :class:`ErrorBody` (or the model given as
    ``s502=...``), plus 431, which every route can answer."""
    result: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 431}):
        model = models.get(f"s{status}", ErrorBody)
        result[status] = {"model": model, "description": _STATUS_TEXT[status]}
    return result
