"""The booking intake under load: how busy it is, and a bounded queue in front of it.

The request path and the sender share one process; under a flood of bookings the intake comes
first. :class:`IntakePressure` tells the outbox how many bookings arrive per second, and the outbox
holds its sends to ``WHATSAPP_SENDS_PER_S_WHEN_BUSY`` while that is above
``WHATSAPP_BUSY_BOOKINGS_PER_S`` (the sender lags and catches up after; nothing is dropped).
:class:`IntakeLimit` answers a booking past ``WHATSAPP_INTAKE_QUEUE`` requests in progress with
``503`` and ``Retry-After`` (the booking not taken) instead of letting connections pile up.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from rollout.booking.service.refusals import refuse
from rollout.util.clock import Clock

#: seconds over which the arrival rate is measured: short, so a flood is seen as one within a
#: quarter of a second (measured: with a 1 s window the sender's unpaced start was the
#: largest part of the flood's p99)
WINDOW_S = 0.25
#: an overloaded intake asks the client to come back in a second
RETRY_AFTER = ((b"retry-after", b"1"),)


class IntakePressure:
    """Booking arrivals per second over the last :data:`WINDOW_S`, on the injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._arrivals: deque[float] = deque()

    def arrived(self) -> None:
        """One booking request came in."""
        self._arrivals.append(self._clock.monotonic())

    def rate(self) -> float:
        """Bookings per second lately."""
        horizon = self._clock.monotonic() - WINDOW_S
        while self._arrivals and self._arrivals[0] < horizon:
            self._arrivals.popleft()
        return len(self._arrivals) / WINDOW_S


class IntakeLimit:
    """ASGI middleware: count booking requests (``POST /api/bookings``) into ``pressure``; past
    ``limit()`` of them in progress, answer ``503`` with ``Retry-After`` without taking the booking."""

    def __init__(self, app: Any, pressure: IntakePressure, limit: Callable[[], int]) -> None:
        self.app, self.pressure, self.limit = app, pressure, limit
        self.in_progress = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/api/bookings":
            await self.app(scope, receive, send)
            return
        self.pressure.arrived()
        if self.in_progress >= self.limit():
            await refuse(send, 503, "overloaded", "too many bookings in progress; retry after 1 s", RETRY_AFTER)
            return
        self.in_progress += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_progress -= 1
