"""The outbox worker: sends pending WhatsApp confirmations in the background.

Whether a booking gets a WhatsApp is decided when it is made: one made while the flag is off is
recorded ``skipped`` at once and never reaches the loop; one outside the rollout's share is
skipped by the loop (the control's confirmation takes the same path as the treatment's). Each loop claims due notifications (a committed ``pending -> sending``), sends them
concurrently, and writes their results back in one transaction at the next turn. Before each send it
reads the live settings again, so a flag turned off stops pending sends within the settings' check
interval. Retries are persisted (``next_attempt_at``) rather than slept through, so a retry does
not hold a worker slot and survives a restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass

from rollout.booking.flags import FeatureFlags
from rollout.booking.phones import InvalidPhone, mask_known, normalize, provider_form
from rollout.booking.provider.breaker import BreakerState, CircuitBreaker
from rollout.booking.provider.client import ZaptraClient
from rollout.booking.provider.outcome import SENDER_RATE_LIMITS, Kind, Outcome
from rollout.booking.service.eventlog import EventLog
from rollout.booking.service.intake import IntakePressure
from rollout.booking.service.metrics import PromMetrics
from rollout.booking.service.settings import LiveSettings, Settings
from rollout.booking.service.store import Due, Result, Store
from rollout.util.clock import Clock
from rollout.util.redact import Redactor

log = logging.getLogger("rollout.service")

#: a claim older than the send timeout plus this is a dead replica's (see Store.recover_stale)
CLAIM_GRACE_S = 5.0
STALE_CHECK_S = 1.0


def backoff_seconds(attempt: int, settings: Settings, retry_after: float | None, rng: random.Random) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, with equal jitter,
    and never shorter than the provider's Retry-After (bounded to one hour)."""
    cap = settings.retry_max_ms / 1000.0
    base = min(cap, settings.retry_base_ms / 1000.0 * 2 ** (attempt - 1))
    delay = base / 2 + rng.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, 3600.0))
    return delay


@dataclass
class _Batch:
    results: list[Result]
    events: list[tuple]


class Outbox:
    """Runs the send loop; see the module docstring."""

    def __init__(
        self,
        store: Store,
        live: LiveSettings,
        client: ZaptraClient,
        breaker: CircuitBreaker,
        events: EventLog,
        prom: PromMetrics,
        clock: Clock,
        flags: FeatureFlags,
        rng: random.Random | None = None,
        poll_interval: float = 0.05,
        pressure: IntakePressure | None = None,
    ) -> None:
        self._store, self._live, self._client, self._breaker = store, live, client, breaker
        self._flags = flags
        self._log, self._prom, self._clock = events, prom, clock
        self._rng = rng or random.Random()
        self._poll = poll_interval
        self._pressure = pressure or IntakePressure(clock)
        #: sends allowed now while the intake is busy (a token bucket refilled at the busy pace)
        self._tokens, self._refilled = 0.0, clock.monotonic()
        self._wake = asyncio.Event()
        #: held by a turn (its claim and the sends it starts) and by each write-back: a write waiting
        #: on the database leaves the loop to the sends, and stop() waits for the turn under way
        self._turning, self._writing = asyncio.Lock(), asyncio.Lock()
        self._stopping = False
        self._in_flight: set[asyncio.Task[None]] = set()
        self._batch = _Batch([], [])
        self._last_stale_check = 0.0
        self.last_error: dict[str, object] | None = None
        #: the provider asked the whole sender to slow down: no new send starts before this time
        self.paused_until = 0.0

    def wake(self) -> None:
        """Tell the loop there is new work (a booking was created)."""
        self._wake.set()

    def breaker_opened(self) -> None:
        """Called by the breaker on each activation."""
        self._batch.events.append((self._clock.time(), "breaker_open", None, None, None))
        self._prom.breaker_activations.inc()
        self._log.emit("breaker_open", consecutive_failures=self._breaker.consecutive_failures)

    def stale_before(self, settings: Settings) -> float:
        """Claims made before this time belong to a replica that died (or hung past its timeout)."""
        return self._clock.time() - (settings.timeout_ms / 1000.0 + CLAIM_GRACE_S)

    async def run(self) -> None:
        """Recover rows a crash left in flight, then send until :meth:`stop`."""
        settings = self._live.current()
        recovered = self._store.recover_in_flight(
            self._clock.time(), settings.fallback_enabled, self.stale_before(settings)
        )
        self._recovered(recovered, "service stopped while the send was in flight; not resent")
        self._last_stale_check = self._clock.monotonic()
        while not self._stopping:
            async with self._turning:
                try:
                    await self._turn()
                except Exception:  # the loop must outlive any one bad turn; the row stays claimed
                    log.exception("outbox turn failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
            except TimeoutError:
                pass
            self._wake.clear()
        await self.flush()

    def _recovered(self, ids: list[int], error: str) -> None:
        for booking_id in ids:
            self._log.emit("failure", booking_id=booking_id, reason="unconfirmed", error=error)

    def _recover_stale(self) -> None:
        """With replicas sharing the outbox, take over the claims of one that died, once a second."""
        if not self._store.shared or self._clock.monotonic() - self._last_stale_check < STALE_CHECK_S:
            return
        self._last_stale_check = self._clock.monotonic()
        settings = self._live.current()
        ids = self._store.recover_stale(self._clock.time(), settings.fallback_enabled, self.stale_before(settings))
        self._recovered(ids, "the replica holding the send stopped answering; not resent")

    async def _turn(self) -> None:
        await self.flush()
        self._recover_stale()
        if self._clock.time() < self.paused_until:
            return
        settings = self._live.current()
        free = self._budget(settings, self._probe_slots(settings, settings.max_concurrency - len(self._in_flight)))
        for due in await self._store.claim_due_async(self._clock.time(), free):
            task = asyncio.create_task(self._send(due))
            self._in_flight.add(task)
            task.add_done_callback(self._done)

    def _probe_slots(self, settings: Settings, free: int) -> int:
        """Half-open, the breaker lets one probe through and fails every other send fast: claim one
        notification at a time, none while a send is out, so the ones due beside the probe wait for
        its answer (sent once it closes the breaker) instead of going to the fallback unsent."""
        self._breaker.configure(settings.breaker_threshold, settings.breaker_reset_ms / 1000.0)
        if self._breaker.state is not BreakerState.HALF_OPEN:
            return free
        return 0 if self._in_flight else min(free, 1)

    def busy(self) -> bool:
        """More bookings arrive per second than ``busy_bookings_per_s``: the intake comes first."""
        return self._pressure.rate() > self._live.current().busy_bookings_per_s

    def _budget(self, settings: Settings, free: int) -> int:
        """How many sends may start now: all ``free`` slots, or while the intake is busy what the
        busy pace has accrued (the sender lags behind a flood and catches up after it)."""
        now = self._clock.monotonic()
        pace = settings.sends_per_s_when_busy
        burst = max(1.0, pace * self._poll * 2)
        self._tokens = min(burst, self._tokens + (now - self._refilled) * pace)
        self._refilled = now
        if not self.busy():
            return free
        allowed = min(free, int(self._tokens))
        self._tokens -= allowed
        return allowed

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    async def flush(self) -> None:
        """Write the results and events counted so far in one transaction, so a reader of the
        store (the metrics and health endpoints) sees every request that has ended, the ones a
        write under way carries included."""
        async with self._writing:
            batch = self._batch
            if not batch.results and not batch.events:
                return
            self._batch = _Batch([], [])
            try:
                late = await self._store.apply_results_async(batch.results, batch.events, self._clock.time())
            except BaseException:  # the database is away (or the write was cancelled): keep the results
                self._batch = _Batch(batch.results + self._batch.results, batch.events + self._batch.events)
                raise
        for booking_id in late:
            self._log.emit(
                "late_result_dropped",
                booking_id=booking_id,
                error="the claim was recovered as stale before this result came back",
            )

    async def stop(self, grace: float) -> None:
        """Stop claiming, let sends in flight finish for up to ``grace`` seconds, write results."""
        self._stopping = True
        self._wake.set()
        async with self._turning:  # a claim under way ends with its sends started, so they are waited for
            pass
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=grace)
        await self.flush()

    @staticmethod
    def decided(settings: Settings, decision: str | None) -> list[tuple[str, str]]:
        """The events a booking's decision writes with the booking itself: its cohort (while the
        flag is on, for the sample-ratio check) and, made while the flag is off, its skip."""
        if not settings.notifications_enabled:
            return [("skipped", "flag_off")]
        return [("cohort", "out" if decision else "in")]

    def booked(self, booking_id: int, phone: str, decision: str | None) -> None:
        """A booking was made: one made while the flag is off is said (logged and counted) skipped
        now; any other wakes the loop (the control's confirmation goes through it too)."""
        if decision != "flag_off":
            if not self.busy():  # busy, the loop's own poll picks it up: no turn per booking
                self.wake()
            return
        self._log.emit("disabled", booking_id=booking_id, phone=phone, reason=decision)
        self._prom.notified("skipped", decision)

    def record_booking(self, cohort: str, latency_ms: float, error: bool) -> None:
        """A booking request ended (``error``: the service failed it): counted per cohort with the
        next batch of results, so the request itself pays for no extra write."""
        self._batch.events.append(
            (self._clock.time(), "booking_error" if error else "booking", cohort, latency_ms, None)
        )
        self._prom.bookings.labels(cohort, "error" if error else "ok").inc()
        self._prom.booking_latency.labels(cohort).observe(latency_ms / 1000.0)

    def _confirmed(self, due: Due, cohort: str) -> None:
        """The booking's confirmation left this service's hands: by WhatsApp (sent, or failed to the
        fallback) for the treatment, by the existing channel for the control."""
        delay_ms = max(0.0, (self._clock.time() - due.created_at) * 1000.0)
        self._batch.events.append((self._clock.time(), "confirmation", cohort, delay_ms, due.booking_id))
        self._prom.confirmation_delay.labels(cohort).observe(delay_ms / 1000.0)

    def _finish(self, result: Result, *events: tuple, due: Due | None = None) -> None:
        self._batch.results.append(result)
        self._batch.events.extend(events)
        if due is not None and (result.status in ("sent", "failed") or result.reason == "not_in_cohort"):
            self._confirmed(due, "control" if result.reason == "not_in_cohort" else "treatment")
        if result.status in ("sent", "failed", "skipped"):
            self._prom.notified(result.status, result.reason)
        if result.fallback:
            self._prom.fallbacks.inc()

    async def _send(self, due: Due) -> None:
        try:
            await self._send_one(due)
        except Exception as exc:  # a bug here must not leave the row claimed forever
            log.exception("send failed unexpectedly")
            settings = self._live.current()
            self._finish(
                Result(
                    due.booking_id,
                    "failed",
                    "internal_error",
                    error=type(exc).__name__,
                    fallback=settings.fallback_enabled,
                ),
                (self._clock.time(), "failed", "internal_error", None, due.booking_id),
            )

    async def _send_one(self, due: Due) -> None:
        settings = self._live.current()
        now = self._clock.time()
        skip = None
        if not settings.notifications_enabled:
            skip = "flag_off"
        else:
            # decided when the booking was made, and re-checked before each send: a share lowered since
            # stops the pending sends too, a share raised never adds a booking made outside it
            inside = due.in_cohort and self._flags.in_treatment(settings, due.customer_id)
            if not inside:
                skip = "not_in_cohort"
            elif due.opted_out:
                skip = "opted_out"
        if skip is not None:
            self._log.emit(
                "disabled" if skip == "flag_off" else "skipped", booking_id=due.booking_id, phone=due.phone, reason=skip
            )
            events = [(now, "skipped", skip, None, due.booking_id)]
            # an earlier attempt failed and WhatsApp is now off for this customer: they were promised a
            # WhatsApp confirmation and never got one, so it must go by the other channel
            fallback = due.attempts > 1 and settings.fallback_enabled
            if fallback:
                self._log.emit(
                    "fallback", booking_id=due.booking_id, phone=due.phone, reason=f"{skip}_after_failed_attempt"
                )
                events.append((now, "fallback", f"{skip}_after_failed_attempt", None, due.booking_id))
            self._finish(
                Result(due.booking_id, "skipped", skip, fallback=fallback),
                *events,
                due=due if due.attempts == 1 else None,
            )
            return
        try:
            e164 = normalize(due.phone, settings.default_region)
        except InvalidPhone as exc:
            self._fail(due, settings, "invalid_phone", str(exc))
            return
        self._breaker.configure(settings.breaker_threshold, settings.breaker_reset_ms / 1000.0)
        if not self._breaker.allow():
            self._fail(due, settings, "circuit_open", "circuit breaker is open; not calling the provider")
            return
        self._log.emit(
            "attempt", booking_id=due.booking_id, phone=e164, attempt=due.attempts, template=settings.template_name
        )
        outcome = await self._client.send_template(
            settings.api_url,
            settings.api_token,
            settings.timeout_ms / 1000.0,
            provider_form(e164),
            settings.template_name,
            settings.template_language,
            due.parameters,
        )
        self._record_call(due, outcome, settings)
        if outcome.ok:
            self._log.emit(
                "success",
                booking_id=due.booking_id,
                phone=e164,
                duration_ms=round(outcome.latency_ms, 1),
                message_id=outcome.message_id,
                wamid=outcome.wamid,
                attempt=due.attempts,
            )
            self._finish(
                Result(
                    due.booking_id,
                    "sent",
                    outcome.reason,
                    message_id=None if outcome.message_id is None else str(outcome.message_id),
                    wamid=outcome.wamid,
                ),
                (self._clock.time(), "sent", outcome.reason, None, due.booking_id),
                due=due,
            )
        elif outcome.kind is Kind.TRANSIENT and due.attempts <= settings.retry_attempts:
            delay = backoff_seconds(due.attempts, settings, outcome.retry_after, self._rng)
            if outcome.reason in SENDER_RATE_LIMITS:
                self._slow_down(outcome, settings)
            error = self._clean(outcome.detail or outcome.reason, settings, due.phone)
            self._log.emit(
                "failure",
                booking_id=due.booking_id,
                phone=e164,
                reason=outcome.reason,
                error=error,
                http_status=outcome.http_status,
                duration_ms=round(outcome.latency_ms, 1),
                attempt=due.attempts,
                retry_in_s=round(delay, 3),
            )
            self._finish(
                Result(
                    due.booking_id, "pending", outcome.reason, next_attempt_at=self._clock.time() + delay, error=error
                )
            )
        else:
            reason = outcome.reason
            if outcome.kind is Kind.TRANSIENT:
                reason = f"retries_exhausted:{outcome.reason}"
            self._fail(due, settings, reason, outcome.detail or outcome.reason, outcome, phone=e164)

    def _slow_down(self, outcome: Outcome, settings: Settings) -> None:
        """A sender-wide rate limit: pause every new send for Retry-After (or the base back-off)."""
        wait = outcome.retry_after if outcome.retry_after is not None else settings.retry_base_ms / 1000.0
        until = self._clock.time() + min(wait, 3600.0)
        if until > self.paused_until:
            self.paused_until = until
            self._log.emit("rate_limited", reason=outcome.reason, pause_s=round(wait, 3))

    def _record_call(self, due: Due, outcome: Outcome, settings: Settings) -> None:
        kind = "call_ok" if outcome.ok else "call_error"
        self._batch.events.append(
            (self._clock.time(), kind, None if outcome.ok else outcome.reason, outcome.latency_ms, due.booking_id)
        )
        self._prom.calls.labels("ok" if outcome.ok else outcome.reason).inc()
        self._prom.latency.observe(outcome.latency_ms / 1000.0)
        if outcome.ok:
            self._breaker.record_success()
        elif outcome.systemic:
            self._breaker.record_failure()
        else:
            self._breaker.record_neutral()
        if settings.debug:
            self._log.emit(
                "provider_response",
                booking_id=due.booking_id,
                kind=outcome.kind.value,
                reason=outcome.reason,
                http_status=outcome.http_status,
                detail=self._clean(outcome.detail, settings, due.phone) or None,
                meta_code=outcome.meta_code,
                duration_ms=round(outcome.latency_ms, 1),
            )

    @staticmethod
    def _clean(text: str, settings: Settings, phone: str | None = None) -> str:
        """Provider text can echo the token or the phone: redact it before it is stored or shown,
        the booking's own phone in every form it can be written."""
        return Redactor(settings.secrets()).text(mask_known(text, phone, settings.default_region))

    def _fail(
        self,
        due: Due,
        settings: Settings,
        reason: str,
        error: str,
        outcome: Outcome | None = None,
        phone: str | None = None,
    ) -> None:
        now = self._clock.time()
        error = self._clean(error, settings, due.phone)
        self.last_error = {"at": now, "reason": reason, "detail": error, "booking_id": due.booking_id}
        fallback = settings.fallback_enabled
        self._log.emit(
            "failure",
            booking_id=due.booking_id,
            phone=phone or due.phone,
            reason=reason,
            error=error,
            http_status=outcome.http_status if outcome else None,
            attempt=due.attempts,
            duration_ms=round(outcome.latency_ms, 1) if outcome else None,
        )
        events = [(now, "failed", reason, None, due.booking_id)]
        if fallback:
            self._log.emit("fallback", booking_id=due.booking_id, phone=phone or due.phone, reason=reason)
            events.append((now, "fallback", reason, None, due.booking_id))
        self._finish(Result(due.booking_id, "failed", reason, error=error, fallback=fallback), *events, due=due)
