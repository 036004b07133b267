"""Durations and rates as people write them in YAML: ``90s``, ``5m``, ``1d``, ``95%``."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``30s``, ``500ms``, ``5m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 30s, 5m, 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return float(match.group(1)) * _SCALE[match.group(2)]
    raise ValueError(f"expected a duration like 30s, 5m, 1h, got {value!r}")


def parse_rate(value: Any) -> float:
    """A number as written (``0.95``, ``2000``), or a percentage string (``95%`` -> 0.95)."""
    if isinstance(value, bool):
        raise ValueError("expected a number or a percentage")
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100.0
        except ValueError:
            pass
        raise ValueError(f"expected a percentage like 95%, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ValueError(f"expected a number or a percentage, got {value!r}")


def format_duration(seconds: float) -> str:
    """``90.0`` -> ``1m30s``; sub-second values in ms."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"


#: how each is written, for the JSON Schema editors check a file against (``rollout schema``)
_SECONDS: list[dict[str, Any]] = [
    {"type": "number", "minimum": 0},
    {"type": "string", "pattern": _DURATION.pattern},
]
_WRITTEN_DURATION = {"anyOf": _SECONDS, "description": "seconds, or 500ms, 30s, 5m, 2h, 1d"}
_WRITTEN_NUMBER = {
    "anyOf": [
        {"type": "number"},
        {"type": "string", "pattern": r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*%?\s*$"},
    ],
    "description": "a number, or a percentage like 95%",
}

Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(_WRITTEN_DURATION)]


def parse_duration_or_forever(value: Any) -> float:
    """A duration, or ``forever`` (infinity)."""
    if isinstance(value, str) and value.strip().lower() == "forever":
        return float("inf")
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"expected a duration like 30s, 5m, 24h, or forever, got {value!r}") from None


_WRITTEN_DURATION_OR_FOREVER = {
    # JSON Schema patterns are ECMA-262: no inline flags, so the letters both ways
    "anyOf": [*_SECONDS, {"type": "string", "pattern": r"^\s*[Ff][Oo][Rr][Ee][Vv][Ee][Rr]\s*$"}],
    "description": "a duration (500ms, 30s, 5m, 2h, 1d), or forever",
}

#: a duration that may be ``forever``
DurationOrForever = Annotated[
    float, BeforeValidator(parse_duration_or_forever), WithJsonSchema(_WRITTEN_DURATION_OR_FOREVER)
]
Number = Annotated[float, BeforeValidator(parse_rate), WithJsonSchema(_WRITTEN_NUMBER)]
