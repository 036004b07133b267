"""Dotted paths into JSON answers: ``status``, ``data.flags.0.enabled``."""

from __future__ import annotations

from typing import Any


def dig(data: Any, dotted: str) -> Any:
    """``dig({"a": {"b": 1}}, "a.b") == 1``; a missing step gives ``KeyError``."""
    for part in dotted.split("."):
        if isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        elif isinstance(data, dict) and part in data:
            data = data[part]
        else:
            raise KeyError(dotted)
    return data
