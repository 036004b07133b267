"""Structured WhatsApp event logs: one JSON object per line.

Every line passes through a :class:`~rollout.util.redact.Redactor`, so the API and admin tokens never
appear and phone numbers are masked, whatever a caller put in the fields.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from rollout.booking.phones import mask
from rollout.util.clock import Clock
from rollout.util.redact import Redactor

LOGGER_NAME = "rollout.whatsapp"


class EventLog:
    """Writes WhatsApp events (attempt, success, failure, disabled, fallback, skipped, ...)."""

    def __init__(
        self, clock: Clock, redactor: Callable[[], Redactor], stream: IO[str] | None = None, path: Path | None = None
    ) -> None:
        self._clock = clock
        self._redactor = redactor
        self._logger = logging.getLogger(f"{LOGGER_NAME}.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        handler: logging.Handler
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
        else:
            handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._handler = handler
        self._logger.addHandler(handler)

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._handler.close()

    def emit(self, event: str, *, phone: str | None = None, **fields: Any) -> None:
        """Log one event. ``phone`` is masked; every string is redacted."""
        record: dict[str, Any] = {
            "ts": datetime.fromtimestamp(self._clock.time(), UTC).isoformat(timespec="milliseconds"),
            "event": event,
        }
        if phone is not None:
            record["phone"] = mask(phone)
        record.update({k: v for k, v in fields.items() if v is not None})
        self._logger.info(json.dumps(self._redactor().value(record), default=str, separators=(",", ":")))
