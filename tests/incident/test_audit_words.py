"""Audit entries in words for people (the dashboard's timeline, `rollout history`, reports)."""

from __future__ import annotations

import pytest

from rollout.incident.words import audit_words


@pytest.mark.parametrize(
    ("action", "detail", "words"),
    [
        (
            "configure",
            {"changes": [{"variable": "FEATURE_SHARE", "from": None, "to": "0"}]},
            "FEATURE_SHARE: (unset) -> 0",
        ),
        ("configure", {"changes": []}, "no change"),
        ("ramp", {"percent": 25, "previous_percent": "10"}, "flag on for 25% (was 10%)"),
        (
            "ramp",
            {"percent": 100, "previous_percent": "10", "full_promotion": True},
            "flag on for 100% (was 10%) - PROMOTED TO 100% NOW by a person",
        ),
        (
            "flag_off",
            {"previous_flag": True, "previous_percent": 50, "reason": "pager"},
            "flag off (was on at 50%): pager",
        ),
        ("paused", {"reason": "a look first", "paused": True}, "a look first (paused: yes)"),
        (
            "notify_failed",
            {"hook": "oncall", "event": "flag_off", "attempts": 2, "problem": "ReadTimeout"},
            "hook: oncall; event: flag_off; attempts: 2; problem: ReadTimeout",
        ),
    ],
)
def test_audit_entries_read_as_words_not_reprs(action, detail, words):
    said = audit_words(action, detail)
    assert said == words
    assert "{" not in said and "None" not in said and "'" not in said
