"""The service's HTTP API (FastAPI) and its background tasks.

:func:`create_app` takes everything it depends on (settings, database path, clock, flag source),
so tests run the real app on a free local port with a manual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import random
import socket
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import IO, Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from rollout.booking.flags import FeatureFlags, FlagSource
from rollout.booking.flags.base import EnvFileSource
from rollout.booking.phones import InvalidPhone, mask, mask_known, normalize, provider_form
from rollout.booking.provider.breaker import BreakerState, CircuitBreaker
from rollout.booking.provider.client import ZaptraClient
from rollout.booking.service import api_schema as S
from rollout.booking.service.api_models import BookingIn, FlagHintIn, PreferencesIn, TestMessageIn
from rollout.booking.service.eventlog import EventLog
from rollout.booking.service.intake import IntakeLimit, IntakePressure
from rollout.booking.service.metrics import PromMetrics, window_metrics
from rollout.booking.service.outbox import Outbox
from rollout.booking.service.refusals import refuse
from rollout.booking.service.schema import StorageError
from rollout.booking.service.settings import LiveSettings, Settings
from rollout.booking.service.store import DuplicateBooking, Store, template_parameters
from rollout.booking.service.stores import open_store
from rollout.util.clock import Clock, SystemClock
from rollout.util.redact import Redactor

log = logging.getLogger("rollout.service")

MAX_BODY_BYTES = 64 * 1024
#: all request headers together; a 1 MB Authorization header is refused, not read and compared
MAX_HEADER_BYTES = 16 * 1024
HEALTH_WINDOW_S = 300.0
PROBE_TTL_S = 15.0
EVENT_RETENTION_S = 8 * 86400.0


class BodyLimit:
    """ASGI middleware: refuse headers over ``header_limit`` bytes in all with 431, and bodies
    over ``limit`` bytes with 413, declared or streamed.

    The body is read whole (it is small by definition) before the app sees the request, so an
    oversized stream is refused before any handler or body parser runs.
    """

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES, header_limit: int = MAX_HEADER_BYTES) -> None:
        self.app, self.limit, self.header_limit = app, limit, header_limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and sum(len(k) + len(v) for k, v in scope.get("headers") or ()) > self.header_limit:
            await refuse(send, 431, "headers_too_large", f"request headers over {self.header_limit} bytes")
            return
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _too_large(send, self.limit)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await _too_large(send, self.limit)
                return
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any, limit: int) -> None:
    await refuse(send, 413, "payload_too_large", f"request body over {limit} bytes")


@dataclass
class Runtime:
    """What the endpoints share; built in the lifespan, stored on ``app.state.rt``."""

    live: LiveSettings
    store: Store
    clock: Clock
    client: ZaptraClient
    breaker: CircuitBreaker
    events: EventLog
    prom: PromMetrics
    outbox: Outbox
    #: who decides, per customer, through OpenFeature
    flags: FeatureFlags
    probe: dict[str, Any] = field(default_factory=dict)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    #: this replica's id when the flag follows PostgreSQL
    replica_id: str | None = None

    @property
    def settings(self) -> Settings:
        return self.live.current()

    def redactor(self) -> Redactor:
        return Redactor(self.settings.secrets())


def create_app(
    live: LiveSettings,
    db_path: FilePath | str,
    clock: Clock | None = None,
    log_stream: IO[str] | None = None,
    log_path: FilePath | None = None,
    rng: random.Random | None = None,
    flag_source: FlagSource | None = None,
    replica_id: str | None = None,
) -> FastAPI:
    """Build the service. Its background tasks start and stop with the ASGI lifespan;
    ``flag_source`` (:mod:`rollout.booking.flags`) is where the flag comes from: the env file by
    default, a PostgreSQL row, or Unleash.

    ``db_path`` is a SQLite file or a ``postgresql://`` URL that a fleet of replicas shares;
    ``replica_id`` names this process in its outbox claims (default: the source's id, else host-pid).
    """
    clock = clock or SystemClock()
    source: FlagSource = flag_source or EnvFileSource()
    replica_id = replica_id or source.replica_id or default_replica_id()
    source.replica_id = source.replica_id or replica_id

    pressure = IntakePressure(clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(db_path, replica_id)
        events = EventLog(clock, lambda: Redactor(live.current().secrets()), stream=log_stream, path=log_path)
        prom = PromMetrics(replica_id if store.shared else None)
        settings = live.current()
        breaker = CircuitBreaker(clock, settings.breaker_threshold, settings.breaker_reset_ms / 1000.0)
        client = ZaptraClient(max_connections=max(settings.max_concurrency, 16))
        flags = FeatureFlags(source, live)
        outbox = Outbox(store, live, client, breaker, events, prom, clock, flags, rng=rng, pressure=pressure)
        breaker.on_open(outbox.breaker_opened)
        rt = Runtime(live, store, clock, client, breaker, events, prom, outbox, flags)
        app.state.rt = rt
        events.emit(
            "service_start",
            flag_enabled=settings.notifications_enabled,
            rollout_percent=settings.rollout_percent,
            provider=settings.api_url,
        )
        rt.tasks = [asyncio.create_task(outbox.run()), asyncio.create_task(_housekeeping(rt))]
        rt.replica_id = replica_id
        source.start(live)
        try:
            yield
        finally:
            source.stop()
            flags.close()
            await outbox.stop(grace=settings.timeout_ms / 1000.0 + 1)
            for task in rt.tasks:
                task.cancel()
            await asyncio.gather(*rt.tasks, return_exceptions=True)
            await client.aclose()
            events.emit("service_stop")
            events.close()
            await store.aclose()

    app = FastAPI(title="rollout WhatsApp booking-notification service", version="0.1.0", lifespan=lifespan)
    app.add_middleware(BodyLimit)
    app.add_middleware(IntakeLimit, pressure=pressure, limit=lambda: live.current().intake_queue)
    _install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app


def default_replica_id() -> str:
    """host-pid: unique on a machine, readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "malformed_json", "detail": "request body is not valid JSON"}, 400)
        fields = {}
        for e in errors:
            path = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
            fields[path] = e.get("msg", "invalid")
        detail = "; ".join(f"{k}: {v}" for k, v in fields.items())
        return JSONResponse({"error": "invalid_request", "detail": detail, "fields": fields}, 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if isinstance(exc.detail, dict):
            body = exc.detail
        else:
            body = {
                "error": {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error"),
                "detail": str(exc.detail),
            }
        if exc.status_code == 405:
            # two routes may share a path (GET and PUT preferences): name every method the path has
            headers["Allow"] = ", ".join(_methods_of(request.scope))
        return JSONResponse(body, exc.status_code, headers=headers or None)

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage unavailable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"error": "storage_unavailable", "detail": str(exc)}, 503)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"error": "internal_error", "detail": "the service failed; see its log"}, 500)


def _methods_of(scope: MutableMapping[str, Any]) -> list[str]:
    """Every method the service answers on the scope's path (routes of one path may sit in several routers)."""
    methods: set[str] = set()
    for router in ROUTERS:
        for route in router.routes:
            match, _ = route.matches({**scope, "method": "GET"})
            if match is not Match.NONE:
                methods |= set(getattr(route, "methods", ()))
    return sorted(methods)


# Declared for the OpenAPI document (the security scheme and which operations need it); the check
# itself is _require_admin, which also knows the read token and answers 403 when admin is disabled.
_BEARER = HTTPBearer(auto_error=False, description="ROLLOUT_ADMIN_TOKEN (or ROLLOUT_READ_TOKEN where allowed)")
_ADMIN_HEADER = APIKeyHeader(name="X-Admin-Token", auto_error=False, description="the same token, as a header")
ADMIN = [Security(_BEARER), Security(_ADMIN_HEADER)]
READERS = ADMIN
CUSTOMER_ID = Path(min_length=1, max_length=64)


def _rt(request: Request) -> Runtime:
    return request.app.state.rt


def _require_admin(request: Request, readers: bool = False, hints: bool = False) -> None:
    """Refuse the request unless it carries the admin token (or, with ``readers``, the read token;
    with ``hints``, the hint token)."""
    settings = _rt(request).settings
    also = (settings.read_token if readers else "", settings.hint_token if hints else "")
    accepted = [t for t in (settings.admin_token, *also) if t]
    if not accepted:
        raise HTTPException(
            403, {"error": "admin_disabled", "detail": "set ROLLOUT_ADMIN_TOKEN to use admin endpoints"}
        )
    given = request.headers.get("authorization", "")
    token = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-admin-token", "")
    if not token or not any(hmac.compare_digest(token.encode(), t.encode()) for t in accepted):
        raise HTTPException(
            401, {"error": "unauthorized", "detail": "missing or wrong token"}, headers={"WWW-Authenticate": "Bearer"}
        )


#: SQLite row ids are signed 64-bit: anything outside cannot exist
_MAX_ID = 2**63 - 1


def _booking_row(rt: Runtime, booking_id: int) -> dict[str, Any]:
    row = rt.store.booking(booking_id) if 1 <= booking_id <= _MAX_ID else None
    if row is None:
        raise HTTPException(404, {"error": "not_found", "detail": f"no booking {booking_id}"})
    return row


def _notification_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": row["n_status"],
        "reason": row["n_reason"],
        "attempts": row["n_attempts"],
        "next_attempt_at": row["n_next_attempt_at"] if row["n_status"] == "pending" else None,
        "last_error": row["n_last_error"],
        "message_id": row["n_message_id"],
        "wamid": row["n_wamid"],
        "updated_at": row["n_updated_at"],
        "fallback": {"reason": row["f_reason"], "created_at": row["f_created_at"]} if row["f_reason"] else None,
    }


#: the booking flow: a booking (committed with its notification), and reading one back
bookings = APIRouter()
#: the notification side: health, the test send, metrics (JSON and Prometheus), templates, fallbacks
whatsapp = APIRouter()
#: a customer's WhatsApp preference (opt-out)
customers = APIRouter()
#: every router of the service, in the order they are included
ROUTERS = (bookings, whatsapp, customers)


@bookings.post(
    "/api/bookings",
    status_code=201,
    response_model=None,
    responses={201: {"model": S.BookingCreated}, **S.errors(400, 409, 413, 422)},
)
async def create_booking(booking: BookingIn, request: Request) -> dict[str, Any]:
    rt = _rt(request)
    started, failed = rt.clock.monotonic(), True
    data = booking.model_dump()
    data["amount"] = f"{booking.amount:.2f}"
    data["event_date"] = booking.event_date.isoformat()
    # whether this booking gets a WhatsApp is decided now, as it is made: a booking taken while the flag
    # is off never gets one later (the sender still re-checks before each send, so off stops pending sends)
    settings = rt.settings
    inside = rt.flags.in_treatment(settings, booking.customer_id)
    decision = None if inside else "not_in_cohort" if settings.notifications_enabled else "flag_off"
    try:
        try:
            booking_id = rt.store.create_booking(data, rt.clock.time(), decision, rt.outbox.decided(settings, decision))
        except DuplicateBooking:
            failed = False  # the client's mistake, not the booking flow's
            raise HTTPException(
                409, {"error": "duplicate_booking", "detail": f"booking_ref {booking.booking_ref!r} exists already"}
            ) from None
        rt.outbox.booked(booking_id, booking.phone, decision)
        failed = False
        return {
            "id": booking_id,
            "booking_ref": booking.booking_ref,
            "notification": {"status": "skipped", "reason": decision}
            if decision == "flag_off"
            else {"status": "pending"},
        }
    finally:  # the booking flow per cohort: treatment against control (the compare gate)
        rt.outbox.record_booking(
            "treatment" if inside else "control", (rt.clock.monotonic() - started) * 1000.0, error=failed
        )


@bookings.get(
    "/api/bookings/{booking_id}",
    response_model=None,
    dependencies=READERS,
    responses={200: {"model": S.BookingView}, **S.errors(401, 403, 404, 422)},
)
async def get_booking(booking_id: int, request: Request) -> dict[str, Any]:
    _require_admin(request, readers=True)
    row = _booking_row(_rt(request), booking_id)
    return {
        "id": row["id"],
        "booking_ref": row["booking_ref"],
        "customer_id": row["customer_id"],
        "phone": mask(row["phone"]),
        "event_name": row["event_name"],
        "event_date": row["event_date"],
        "created_at": row["created_at"],
        "notification": _notification_view(row),
    }


@bookings.get(
    "/api/booking/{booking_id}/whatsapp-data",
    response_model=None,
    dependencies=ADMIN,
    responses={200: {"model": S.WhatsAppData}, **S.errors(401, 403, 404, 422)},
)
async def whatsapp_data(booking_id: int, request: Request) -> dict[str, Any]:
    _require_admin(request)
    rt = _rt(request)
    row = _booking_row(rt, booking_id)
    settings = rt.settings
    try:
        phone, phone_error = normalize(row["phone"], settings.default_region), None
    except InvalidPhone as exc:
        phone, phone_error = None, str(exc)
    return {
        "booking_id": row["id"],
        "booking_ref": row["booking_ref"],
        "customer": {
            "id": row["customer_id"],
            "parent_name": row["parent_name"],
            "phone": phone,
            "phone_error": phone_error,
        },
        "child_name": row["child_name"],
        "event": {"name": row["event_name"], "date": row["event_date"]},
        "venue": row["venue"],
        "amount": row["amount"],
        "payment_method": row["payment_method"],
        "template": {
            "name": settings.template_name,
            "language": settings.template_language,
            "parameters": list(template_parameters(row)),
        },
        "notification": _notification_view(row),
    }


@whatsapp.get("/api/whatsapp/health", response_model=None, responses={200: {"model": S.Health}, **S.errors()})
async def health(request: Request) -> dict[str, Any]:
    return await _health(_rt(request))


@whatsapp.post(
    "/api/whatsapp/test",
    response_model=None,
    dependencies=ADMIN,
    responses={
        200: {"model": S.TestVerdict},
        **S.errors(400, 401, 403, 409, 413, 422),
        502: {"model": S.TestVerdict, "description": "the provider did not send it"},
    },
)
async def test_message(body: TestMessageIn, request: Request) -> JSONResponse:
    _require_admin(request)
    rt = _rt(request)
    settings = rt.settings
    try:
        e164 = normalize(body.phone, settings.default_region)
    except InvalidPhone as exc:
        raise HTTPException(422, {"error": "invalid_phone", "detail": str(exc)}) from None
    if not settings.api_token:
        raise HTTPException(409, {"error": "not_configured", "detail": "ZAPTRA_API_TOKEN is not set"})
    timeout, phone = settings.timeout_ms / 1000.0, provider_form(e164)
    if body.message is not None:
        outcome = await rt.client.send_message(settings.api_url, settings.api_token, timeout, phone, body.message)
    else:
        sample = ("Test Parent", "Test Event", "2026-01-01", "Test Venue", "Test Child", "TEST-0001", "0.00", "test")
        outcome = await rt.client.send_template(
            settings.api_url,
            settings.api_token,
            timeout,
            phone,
            settings.template_name,
            settings.template_language,
            sample,
        )
    rt.events.emit(
        "test_message",
        phone=e164,
        ok=outcome.ok,
        reason=outcome.reason,
        http_status=outcome.http_status,
        error=mask_known(outcome.detail, e164, settings.default_region) or None,
        duration_ms=round(outcome.latency_ms, 1),
    )
    verdict = {
        "ok": outcome.ok,
        "outcome": outcome.kind.value,
        "reason": outcome.reason,
        "phone": mask(e164),
        "http_status": outcome.http_status,
        "message_id": outcome.message_id,
        "wamid": outcome.wamid,
        "meta_code": outcome.meta_code,
        "detail": rt.redactor().text(mask_known(outcome.detail, e164, settings.default_region)) or None,
        "duration_ms": round(outcome.latency_ms, 1),
        "breaker": rt.breaker.state.value,
    }
    return JSONResponse(verdict, 200 if outcome.ok else 502)


@whatsapp.get(
    "/api/whatsapp/metrics", response_model=None, responses={200: {"model": S.WindowMetrics}, **S.errors(422)}
)
async def metrics(
    request: Request,
    window: Annotated[float, Query(gt=0, le=8 * 86400)] = 300,
    above_ms: Annotated[float | None, Query(ge=0, le=3_600_000)] = None,
) -> dict[str, Any]:
    rt = _rt(request)
    await rt.outbox.flush()
    data = window_metrics(rt.store, rt.clock.time(), window, above_ms)
    settings = rt.settings
    data.update(
        {
            "breaker_state": rt.breaker.state.value,
            "flag_enabled": settings.notifications_enabled,
            "rollout_percent": settings.rollout_percent,
            "outbox": rt.store.outbox_counts(rt.clock.time()),
            "config_error": rt.redactor().text(rt.live.error) if rt.live.error else None,
            "config_generation": rt.live.generation,
            "replica_id": rt.replica_id,
            "flag_version": rt.live.flag_version,
            **rt.flags.view(),
            # counts come from the store: on PostgreSQL they are the whole fleet's
            "store": rt.store.kind,
            "scope": "fleet" if rt.store.shared else "replica",
        }
    )
    return data


@whatsapp.post(
    "/api/whatsapp/flag/refresh",
    status_code=202,
    response_model=None,
    dependencies=ADMIN,
    responses={202: {"model": S.FlagRefresh}, **S.errors(400, 401, 403, 413, 422)},
)
async def flag_refresh(request: Request, hint: FlagHintIn | None = None) -> dict[str, Any]:
    """A hint that the flag changed (Unleash's webhook, the engine after its flag-off): re-read it
    from its source now. Idempotent; hints coalesce; the body is never trusted for the value."""
    _require_admin(request, hints=True)
    rt = _rt(request)
    source = rt.flags.source
    refresh = getattr(source, "refresh_now", None)  # a source that follows its store live has none
    if refresh is None:
        said = ("not_needed", f"the {source.name} source follows its store live; nothing to re-read")
    elif hint is not None and hint.featureName not in (None, source.flag_key):
        said = ("ignored", f"a hint for feature {hint.featureName!r}; this service follows {source.flag_key!r}")
    else:
        state = refresh()
        said = (state, "re-reading the flag now" if state == "started" else "a re-read is already due")
    return {"refresh": said[0], "flag_provider": source.name, "detail": said[1]}


#: the cohort samples a rank judge may ask for: the event kind behind each compare latency
SAMPLED = {"booking_latency_ms": "booking", "confirmation_delay_ms": "confirmation"}


@whatsapp.get(
    "/api/whatsapp/samples", response_model=None, responses={200: {"model": S.CohortSamples}, **S.errors(422)}
)
async def cohort_samples(
    request: Request,
    metric: Annotated[Literal["booking_latency_ms", "confirmation_delay_ms"], Query()],
    window: Annotated[float, Query(gt=0, le=8 * 86400)] = 300,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    """Per cohort, the newest ``limit`` latencies behind a compare metric (a rank test's samples)."""
    rt = _rt(request)
    settings = rt.settings
    await rt.outbox.flush()
    samples = rt.store.cohort_latencies(SAMPLED[metric], rt.clock.time() - window, limit)
    return {
        "metric": metric,
        "window_seconds": window,
        "flag_enabled": settings.notifications_enabled,
        "rollout_percent": settings.rollout_percent,
        **samples,
    }


@whatsapp.get(
    "/metrics",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        200: {
            "content": {"text/plain": {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition format",
        },
        **S.errors(),
    },
)
async def prometheus(request: Request) -> Response:
    rt = _rt(request)
    settings = rt.settings
    rt.prom.flag.set(1 if settings.notifications_enabled else 0)
    rt.prom.percent.set(settings.rollout_percent)
    rt.prom.breaker_open.set(0 if rt.breaker.state is BreakerState.CLOSED else 1)
    rt.prom.pending.set(rt.store.outbox_counts(rt.clock.time())["pending"])
    return Response(rt.prom.exposition(), media_type=CONTENT_TYPE_LATEST)


@whatsapp.post(
    "/api/whatsapp/templates/sync",
    response_model=None,
    dependencies=ADMIN,
    responses={200: {"model": S.TemplatesSynced}, **S.errors(401, 403, 502, s502=S.ProviderError)},
)
async def sync_templates(request: Request) -> JSONResponse:
    _require_admin(request)
    rt = _rt(request)
    settings = rt.settings
    outcome = await rt.client.get_templates(settings.api_url, settings.api_token, settings.timeout_ms / 1000.0)
    templates = outcome.data.get("templates") if outcome.ok else None
    if not isinstance(templates, list) or not all(
        isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("language"), str) for t in templates
    ):
        detail = rt.redactor().text(outcome.detail) if not outcome.ok else "templates list missing or malformed"
        return JSONResponse({"error": "provider_error", "reason": outcome.reason, "detail": detail}, 502)
    rt.store.replace_templates(templates, rt.clock.time())
    found = any(
        t["name"] == settings.template_name
        and t["language"] == settings.template_language
        and str(t.get("status", "APPROVED")).upper() == "APPROVED"
        for t in templates
    )
    rt.events.emit("templates_synced", count=len(templates), configured_template_found=found)
    return JSONResponse(
        {
            "count": len(templates),
            "templates": rt.store.templates(),
            "configured_template": {
                "name": settings.template_name,
                "language": settings.template_language,
                "approved": found,
            },
        }
    )


@whatsapp.get("/api/whatsapp/templates", response_model=None, responses={200: {"model": S.Templates}, **S.errors()})
async def list_templates(request: Request) -> dict[str, Any]:
    return {"templates": _rt(request).store.templates()}


@whatsapp.get(
    "/api/whatsapp/fallbacks",
    response_model=None,
    dependencies=ADMIN,
    responses={200: {"model": S.Fallbacks}, **S.errors(401, 403, 422)},
)
async def fallbacks(request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    _require_admin(request)
    rows = _rt(request).store.fallbacks(limit)
    for row in rows:
        row["phone"] = mask(row["phone"])
    return {"fallbacks": rows}


@customers.get(
    "/api/customer/{customer_id}/preferences",
    response_model=None,
    responses={200: {"model": S.Preferences}, **S.errors(422)},
)
async def get_preferences(request: Request, customer_id: str = CUSTOMER_ID) -> dict[str, Any]:
    return _rt(request).store.preferences(customer_id)


@customers.put(
    "/api/customer/{customer_id}/preferences",
    response_model=None,
    responses={200: {"model": S.Preferences}, **S.errors(400, 413, 422)},
)
async def put_preferences(body: PreferencesIn, request: Request, customer_id: str = CUSTOMER_ID) -> dict[str, Any]:
    rt = _rt(request)
    result = rt.store.set_preferences(customer_id, body.whatsapp_opt_out, rt.clock.time())
    rt.events.emit("preference_changed", customer_id=customer_id, whatsapp_opt_out=body.whatsapp_opt_out)
    return result


async def _probe_provider(rt: Runtime) -> dict[str, Any]:
    """Is the provider reachable with our token? Cached for PROBE_TTL_S on the injected clock,
    and re-probed at once when the URL or the token changes."""
    now = rt.clock.monotonic()
    settings = rt.settings
    key = hashlib.sha256(f"{settings.api_url}\0{settings.api_token}".encode()).hexdigest()
    if rt.probe and rt.probe["_key"] == key and now - rt.probe["_at"] < PROBE_TTL_S:
        return rt.probe
    result: dict[str, Any]
    if not settings.api_token:
        result = {"reachable": None, "detail": "ZAPTRA_API_TOKEN is not set"}
    else:
        outcome = await rt.client.get_templates(
            settings.api_url, settings.api_token, min(settings.timeout_ms / 1000.0, 3.0)
        )
        reachable = outcome.http_status is not None
        result = {
            "reachable": reachable,
            "authorized": outcome.ok if reachable else None,
            "reason": outcome.reason,
            "latency_ms": round(outcome.latency_ms, 1),
            "detail": rt.redactor().text(outcome.detail) or None,
        }
    result["checked_at"] = rt.clock.time()
    result["_at"], result["_key"] = now, key
    rt.probe = result
    return result


async def _health(rt: Runtime) -> dict[str, Any]:
    settings = rt.settings
    probe = await _probe_provider(rt)
    await rt.outbox.flush()
    recent = window_metrics(rt.store, rt.clock.time(), HEALTH_WINDOW_S)
    breaker = rt.breaker.state
    problems: list[str] = []
    status = "ok"
    if breaker is BreakerState.OPEN:
        status, problems = "down", [*problems, "circuit breaker is open"]
    if probe.get("reachable") is False:
        status, problems = "down", [*problems, "provider unreachable"]
    elif probe.get("authorized") is False:
        status, problems = "down", [*problems, f"provider refused the request ({probe.get('reason')})"]
    if status == "ok":
        if breaker is BreakerState.HALF_OPEN:
            status, problems = "degraded", [*problems, "circuit breaker is half-open"]
        if recent["success_rate"] is not None and recent["attempts"] >= 5 and recent["success_rate"] < 0.95:
            status, problems = "degraded", [*problems, "success rate below 95% in the last 5 minutes"]
        if recent["avg_latency_ms"] is not None and recent["avg_latency_ms"] > 2000:
            status, problems = "degraded", [*problems, "provider latency above 2 s in the last 5 minutes"]
        if rt.live.error:
            status, problems = "degraded", [*problems, "configuration refused; sends disabled"]
    if rt.live.lease_expired:
        status, problems = (
            "down",
            [*problems, f"flag source ({rt.flags.source.name}) unreachable past the lease; sends stopped"],
        )
    last = rt.outbox.last_error
    return {
        "status": status,
        "problems": problems,
        "flag_enabled": settings.notifications_enabled,
        "rollout_percent": settings.rollout_percent,
        "breaker": {
            "state": breaker.value,
            "consecutive_failures": rt.breaker.consecutive_failures,
            "activations": rt.breaker.activations,
        },
        "provider": {k: v for k, v in probe.items() if not k.startswith("_")},
        "recent": {
            "window_seconds": HEALTH_WINDOW_S,
            "attempts": recent["attempts"],
            "success_rate": recent["success_rate"],
            "avg_latency_ms": recent["avg_latency_ms"],
        },
        "last_error": rt.redactor().value(last) if last else None,
        "config_error": rt.redactor().text(rt.live.error) if rt.live.error else None,
        "outbox": rt.store.outbox_counts(rt.clock.time()),
        "sending_paused_until": rt.outbox.paused_until if rt.outbox.paused_until > rt.clock.time() else None,
        "replica_id": rt.replica_id,
        "flag_version": rt.live.flag_version,
        **rt.flags.view(),
    }


async def _housekeeping(rt: Runtime) -> None:
    """Log the health status on schedule (hourly by default) and prune old metric events."""
    last_logged = rt.clock.monotonic()
    while True:
        await asyncio.sleep(0.5)
        now = rt.clock.monotonic()
        if now - last_logged >= rt.settings.health_log_interval_s:
            last_logged = now
            try:
                report = await _health(rt)
                rt.events.emit(
                    "health",
                    status=report["status"],
                    problems=report["problems"],
                    flag_enabled=report["flag_enabled"],
                    rollout_percent=report["rollout_percent"],
                    breaker=report["breaker"]["state"],
                    success_rate=report["recent"]["success_rate"],
                )
                rt.store.prune_events(rt.clock.time() - EVENT_RETENTION_S)
            except Exception:
                log.exception("scheduled health check failed")
