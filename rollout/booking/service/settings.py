"""The service's configuration, with the seed plan's variable names, re-read while it runs.

Precedence: built-in defaults < process environment < env file. The env file wins because it is
what the rollout engine writes to ramp and to kill the feature.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rollout.util.envfile import read_env_file
from rollout.util.errors import ConfigError

log = logging.getLogger("rollout.service")

#: environment variable -> Settings field; the order is the order of .env.example
VARIABLES: dict[str, str] = {
    "WHATSAPP_NOTIFICATIONS_ENABLED": "notifications_enabled",
    "WHATSAPP_ROLLOUT_PERCENT": "rollout_percent",
    "ZAPTRA_API_URL": "api_url",
    "ZAPTRA_API_TOKEN": "api_token",
    "WHATSAPP_FALLBACK_ENABLED": "fallback_enabled",
    "WHATSAPP_RETRY_ATTEMPTS": "retry_attempts",
    "WHATSAPP_TIMEOUT_MS": "timeout_ms",
    "WHATSAPP_DEBUG": "debug",
    "WHATSAPP_TEMPLATE_NAME": "template_name",
    "WHATSAPP_TEMPLATE_LANGUAGE": "template_language",
    "WHATSAPP_ROLLOUT_GROUP": "rollout_group",
    "WHATSAPP_DEFAULT_REGION": "default_region",
    "WHATSAPP_BREAKER_THRESHOLD": "breaker_threshold",
    "WHATSAPP_BREAKER_RESET_MS": "breaker_reset_ms",
    "WHATSAPP_RETRY_BASE_MS": "retry_base_ms",
    "WHATSAPP_RETRY_MAX_MS": "retry_max_ms",
    "WHATSAPP_MAX_CONCURRENCY": "max_concurrency",
    "WHATSAPP_BUSY_BOOKINGS_PER_S": "busy_bookings_per_s",
    "WHATSAPP_SENDS_PER_S_WHEN_BUSY": "sends_per_s_when_busy",
    "WHATSAPP_INTAKE_QUEUE": "intake_queue",
    "WHATSAPP_HEALTH_LOG_INTERVAL_S": "health_log_interval_s",
    "ROLLOUT_ADMIN_TOKEN": "admin_token",
    "ROLLOUT_READ_TOKEN": "read_token",
}
FIELD_TO_VARIABLE = {field: var for var, field in VARIABLES.items()}
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


class Settings(BaseModel):
    """One consistent snapshot of the service's configuration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notifications_enabled: bool = False
    rollout_percent: int = Field(100, ge=0, le=100)
    api_url: str = "https://demo.zaptra.in/api/wpbox"
    api_token: str = ""
    fallback_enabled: bool = True
    retry_attempts: int = Field(3, ge=0, le=10)
    timeout_ms: int = Field(10_000, ge=50, le=120_000)
    debug: bool = False
    template_name: str = Field("booking_confirmation", min_length=1, max_length=512)
    template_language: str = Field("en_US", min_length=2, max_length=15)
    rollout_group: str = Field("whatsapp_notifications", min_length=1, max_length=200)
    default_region: str = Field("IN", min_length=2, max_length=2)
    breaker_threshold: int = Field(5, ge=1, le=1000)
    breaker_reset_ms: int = Field(60_000, ge=10, le=3_600_000)
    retry_base_ms: int = Field(500, ge=1, le=600_000)
    retry_max_ms: int = Field(30_000, ge=1, le=3_600_000)
    max_concurrency: int = Field(64, ge=1, le=1024)
    #: bookings per second above which the intake is busy and the sender is held back
    busy_bookings_per_s: float = Field(200, gt=0, le=1_000_000)
    #: the sender's pace while the intake is busy (its floor: it never stops)
    sends_per_s_when_busy: float = Field(100, gt=0, le=1_000_000)
    #: booking requests in progress before the next one is answered 503 with Retry-After
    intake_queue: int = Field(512, ge=1, le=100_000)
    health_log_interval_s: float = Field(3600, gt=0, le=86_400)
    admin_token: str = ""
    #: reads bookings (GET /api/bookings/{id}) without the admin token's other powers
    read_token: str = ""

    @field_validator("notifications_enabled", "fallback_enabled", "debug", mode="before")
    @classmethod
    def _strict_bool(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if word not in _BOOL_WORDS:
                raise ValueError("must be true or false")
            return _BOOL_WORDS[word]
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("api_token", "admin_token", "read_token")
    @classmethod
    def _secret_length(cls, value: str) -> str:
        if value and len(value) < 8:
            raise ValueError("must be at least 8 characters (or empty)")
        return value

    def secrets(self) -> list[str]:
        """The values that must never appear in any output."""
        return [s for s in (self.api_token, self.admin_token, self.read_token) if s]


def variable_problems(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(variable, problem)`` for each known variable whose value the service would refuse, judged
    one by one (cross-variable rules wait for :func:`settings_from`). Unknown variables pass."""
    problems = []
    for var, value in values.items():
        field = VARIABLES.get(var)
        if field is None:
            continue
        try:
            Settings(**{field: value})
        except ValidationError as exc:
            message = exc.errors()[0]["msg"].removeprefix("Value error, ")
            shown = "***" if field in ("api_token", "admin_token", "read_token") else repr(value)
            problems.append((var, f"{message} (got {shown}; the service would refuse it)"))
    return problems


def settings_from(values: Mapping[str, str], source: str = "configuration") -> Settings:
    """Build :class:`Settings` from variables; unknown variables are ignored.

    Raises :class:`ConfigError` naming each bad variable, e.g.
    ``.env: WHATSAPP_RETRY_ATTEMPTS: Input should be less than or equal to 10 (got '99')``.
    """
    data = {field: values[var] for var, field in VARIABLES.items() if var in values}
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            var = FIELD_TO_VARIABLE.get(field, field)
            shown = "***" if field in ("api_token", "admin_token", "read_token") else repr(values.get(var, ""))
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{var}: {message} (got {shown})")
        raise ConfigError(f"{source}: " + "; ".join(problems)) from exc
    if settings.notifications_enabled and not settings.api_token:
        raise ConfigError(f"{source}: ZAPTRA_API_TOKEN: must be set when WHATSAPP_NOTIFICATIONS_ENABLED=true")
    return settings


@dataclass(frozen=True)
class _Stamp:
    inode: int
    mtime_ns: int
    size: int


class LiveSettings:
    """Settings that follow the env file while the service runs.

    :meth:`current` is cheap: it looks at the file's inode, mtime and size at most every
    ``check_interval`` seconds and re-reads it only when one of them changed. The outbox checks it
    right before every send, so a flag written to the file stops sends within that interval.

    A change that does not validate is refused *closed*: the last good settings stay in force but
    with notifications disabled, and :attr:`error` says why, until the file is fixed. So is a file
    that reads empty after holding variables: that is what a non-atomic write (an editor, a shell's
    ``>``) looks like half way, and taking it as good would replace the last good settings with the
    defaults (no admin token) for as long as a bad value follows.
    """

    def __init__(
        self,
        env_file: Path | None = None,
        environ: Mapping[str, str] | None = None,
        check_interval: float = 0.02,
        on_change: Callable[[Settings, Settings], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.env_file = Path(env_file) if env_file else None
        self._monotonic = monotonic
        self._environ = dict(os.environ if environ is None else environ)
        self._check_interval = check_interval
        self._on_change = on_change
        self._lock = threading.Lock()
        self._stamp: _Stamp | None = None
        #: the file held variables when last read: reading it empty now is a write half way
        self._had_values = False
        self._checked_at = float("-inf")
        self.error: str | None = None
        #: bumped on every re-read of the file: lets a client see that a change was taken in
        self.generation = 0
        #: variables pushed by a flag source (a PostgreSQL row, Unleash): they win over the file
        self._overlay: dict[str, str] = {}
        #: the flag version the follower last applied (None: the flag comes from the file)
        self.flag_version: int | None = None
        #: the overlay holds only while its follower keeps renewing it (see :meth:`renew_lease`)
        self._lease_until: float | None = None
        self.lease_expired = False
        self._settings = self._load()  # raises ConfigError: start-up refuses bad configuration
        self._good = self._settings

    def _values(self) -> dict[str, str]:
        values = dict(self._environ)
        if self.env_file is not None:
            self._stamp = self._stamp_of(self.env_file)
            found = read_env_file(self.env_file)
            if not found and self._stamp is not None and self._stamp.size == 0 and self._had_values:
                raise ConfigError(
                    f"{self.env_file}: the env file is empty (a write caught half way? write it atomically: "
                    "a temporary file renamed over it)"
                )
            values.update(found)
            self._had_values = bool(found)
        values.update(self._overlay)
        return values

    def set_overlay(self, values: dict[str, str], version: int | None = None, lease_s: float | None = None) -> None:
        """Apply ``values`` over the file now (the flag and percentage a follower was told of); the
        very next :meth:`current` sees them, so a flag-off stops the next send. With ``lease_s``,
        the overlay is a lease: see :meth:`renew_lease`."""
        with self._lock:
            self._overlay = dict(values)
            self.flag_version = version
            self.reload()
            self._checked_at = time.monotonic()
        if lease_s is not None:
            self.renew_lease(lease_s)

    def renew_lease(self, lease_s: float) -> None:
        """The flag source has just read its flag: the overlay holds for ``lease_s`` more seconds.

        A replica that cannot read its flag for longer sends nothing (fail closed) until it can
        again: the engine counts a replica silent for 5 s as gone when it confirms a flag-off, so a
        replica cut off from the flag must have stopped by then, whatever the row now says.
        """
        self._lease_until = self._monotonic() + lease_s

    def _load(self) -> Settings:
        source = str(self.env_file) if self.env_file else "environment"
        return settings_from(self._values(), source)

    @staticmethod
    def _stamp_of(path: Path) -> _Stamp | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return _Stamp(st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> Settings:
        """The settings in force now, re-read from the env file if it changed; WhatsApp off while
        a flag lease has expired."""
        settings = self._from_file()
        if self._lease_until is not None and self._monotonic() > self._lease_until:
            if not self.lease_expired:
                log.error(
                    "the flag source has not answered for the lease time: WhatsApp sends stopped until it answers again"
                )
                self.lease_expired = True
            return settings.model_copy(update={"notifications_enabled": False})
        self.lease_expired = False
        return settings

    def _from_file(self) -> Settings:
        if self.env_file is None:
            return self._settings  # an overlay re-builds them itself (set_overlay)
        now = time.monotonic()  # a 20 ms stat cache, not a window: real time is right here
        if now - self._checked_at < self._check_interval:
            return self._settings
        with self._lock:
            self._checked_at = now
            if self._stamp_of(self.env_file) == self._stamp and self.error is None:
                return self._settings
            self.reload()
            return self._settings

    def reload(self) -> None:
        """Re-read the env file now; on error keep the last good settings with the flag off."""
        before = self._settings
        self.generation += 1
        try:
            fresh = self._load()
        except ConfigError as exc:
            if self.error != str(exc):
                log.error("configuration refused, WhatsApp sends disabled until fixed: %s", exc)
            self.error = str(exc)
            self._settings = self._good.model_copy(update={"notifications_enabled": False})
        else:
            self.error = None
            self._settings = self._good = fresh
        if self._settings != before and self._on_change is not None:
            self._on_change(before, self._settings)
