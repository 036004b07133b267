"""A circuit breaker with an injected clock.

Closed: calls go through; ``threshold`` consecutive systemic failures open it. Open: calls fail fast
until ``reset_seconds`` have passed, then it half-opens and lets exactly one probe through. The
probe's success closes it; its failure opens it again. Every transition to open is one activation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum

from rollout.util.clock import Clock


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """See the module docstring. Thread-safe; ``on_open`` is called on every activation."""

    def __init__(
        self,
        clock: Clock,
        threshold: int = 5,
        reset_seconds: float = 60.0,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self.threshold = threshold
        self.reset_seconds = reset_seconds
        self._on_open = on_open
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_out = False
        self.activations = 0

    def on_open(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` on every activation (after the state change, outside the lock)."""
        self._on_open = callback

    def configure(self, threshold: int, reset_seconds: float) -> None:
        """Apply new limits (the settings are live)."""
        with self._lock:
            self.threshold, self.reset_seconds = threshold, reset_seconds

    @property
    def state(self) -> BreakerState:
        with self._lock:
            self._maybe_half_open()
            return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _maybe_half_open(self) -> None:
        if self._state is BreakerState.OPEN and self._clock.monotonic() - self._opened_at >= self.reset_seconds:
            self._state = BreakerState.HALF_OPEN
            self._probe_out = False

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one probe at a time is allowed."""
        with self._lock:
            self._maybe_half_open()
            if self._state is BreakerState.CLOSED:
                return True
            if self._state is BreakerState.HALF_OPEN and not self._probe_out:
                self._probe_out = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._state = BreakerState.CLOSED
            self._probe_out = False

    def record_neutral(self) -> None:
        """A call that says nothing about the provider's health (e.g. a bad recipient)."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._state = BreakerState.CLOSED
                self._failures = 0
            self._probe_out = False

    def record_failure(self) -> None:
        opened = False
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.threshold
            ):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock.monotonic()
                self._probe_out = False
                self.activations += 1
                opened = True
        if opened and self._on_open is not None:
            self._on_open()
