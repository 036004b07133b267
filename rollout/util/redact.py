"""Redaction of secrets and people in anything rollout writes."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from rollout.util.masking import mask_in_text

REDACTED = "***"


class Redactor:
    """Replaces known secret values with ``***`` and masks phone numbers in text.

    One redactor serves a whole command: every secret the engine resolves (an environment's
    variables, a playbook's tokens, headers and command arguments, a webhook's token) is
    :meth:`learn`-ed by it as it is resolved, so every output that passes through it (the console,
    the state store, reports, notifications, the CLI's error line) hides it, whatever backend or
    notifier it came through.

    Secrets shorter than 4 characters are not redacted as substrings (they would shred normal text);
    they are rejected by configuration validation before they get here.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        self.learn(secrets)

    def learn(self, secrets: Iterable[str]) -> None:
        """Know ``secrets`` from now on (longest first, so a secret containing another goes whole)."""
        with self._lock:
            known = {*self._secrets, *(s for s in secrets if s and len(s) >= 4)}
            self._secrets = sorted(known, key=len, reverse=True)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """A new redactor that knows these secrets and ``secrets``."""
        return Redactor([*self._secrets, *secrets])

    def text(self, value: str) -> str:
        """Redact secrets and mask phones in one string."""
        for secret in self._secrets:
            value = value.replace(secret, REDACTED)
        return mask_in_text(value)

    def value(self, value: Any) -> Any:
        """Redact recursively through dicts, lists and strings."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        return value
