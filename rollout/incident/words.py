"""An audit entry in words, as people read it in the dashboard, ``rollout history`` and reports:
``FEATURE_SHARE: (unset) -> 0``, ``flag on for 25% (was 10%)``, never a Python repr."""

from __future__ import annotations

from typing import Any


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_shown(v)}" for k, v in value.items() if v not in (None, "", [], {}))
    if isinstance(value, (list, tuple)):
        return ", ".join(_shown(v) for v in value)
    return str(value)


def intent_words(detail: dict[str, Any]) -> str:
    """The value a ``flag_intent`` entry announced: ``flag on for 10%``, ``flag off``."""
    if detail.get("flag") is False:
        return "flag off"
    percent = detail.get("percent")
    return "flag on" + (f" for {percent}%" if percent is not None else "")


def audit_words(action: str, detail: dict[str, Any]) -> str:
    """What ``action`` with ``detail`` did, in one line."""
    if action == "flag_intent":
        return f"about to write {intent_words(detail)} ({detail.get('by')})"
    if action == "ramp":
        was = detail.get("previous_percent")
        said = f"flag on for {detail.get('percent')}%" + (f" (was {was}%)" if was not in (None, "") else "")
        return said + (" - PROMOTED TO 100% NOW by a person" if detail.get("full_promotion") else "")
    if action == "flag_off":
        was = "on" if detail.get("previous_flag") else "off"
        at = detail.get("previous_percent")
        return f"flag off (was {was}{f' at {at}%' if at is not None else ''}): {detail.get('reason')}"
    if action in ("drill_armed", "drill_off", "drill_restored"):
        return f"drill: {intent_words(detail)} (the write took {detail.get('write_ms')} ms)"
    if action == "drill_round":
        how = "with the hint" if detail.get("hinted") else "polling alone"
        slowest = detail.get("slowest_ms")
        return f"drill flag-off {how}: " + (
            f"every replica obeyed, the slowest in {slowest} ms" if slowest is not None else "not every replica obeyed"
        )
    if action == "drill_finished" and detail.get("summary"):
        return str(detail["summary"])
    if action == "configure":
        changes = detail.get("changes") or []
        return ", ".join(f"{c['variable']}: {_shown(c['from'])} -> {_shown(c['to'])}" for c in changes) or "no change"
    if detail.get("reason") and action not in ("flag_off_failed",):
        rest = {k: v for k, v in detail.items() if k not in ("reason", "verdict") and v not in (None, "", [], {})}
        return f"{detail['reason']}" + (f" ({'; '.join(f'{k}: {_shown(v)}' for k, v in rest.items())})" if rest else "")
    keep = {k: v for k, v in detail.items() if k not in ("verdict", "changes") and v not in (None, "", [], {})}
    return "; ".join(f"{k}: {_shown(v)}" for k, v in keep.items())
