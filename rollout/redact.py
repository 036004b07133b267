"""Redaction of secrets and people in anything rollout writes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rollout.phones import mask_in_text

REDACTED = "***"


class Redactor:
    """Replaces known secret values with ``***`` and masks phone numbers in text.

    Secrets shorter than 4 characters are not redacted as substrings (they would shred normal text);
    they are rejected by configuration validation before they get here.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def with_secrets(self, secrets: Iterable[str]) -> Redactor:
        """A redactor that also knows ``secrets``."""
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
